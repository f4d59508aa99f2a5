"""Which datasets exist: YAML files, Python modules, entry points and code, validated into model values.

A refused declaration is kept with its message (file and key) and never
stops the others from being offered.
"""
