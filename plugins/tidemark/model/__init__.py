"""Plain values every other package shares: datasets, column types, time grammar, schedules, the run's plan.

Imports nothing of Tidemark above it and nothing outside the standard
library and its parsers: a declaration can be built and checked anywhere.
"""
