"""The Airflow layer: DAGs built per dataset (``factory``), their tasks, the sensor and trigger, the UI plugin.

The only package that imports Airflow: everything below it is plain Python
that a test (or another orchestrator) drives directly.
"""
