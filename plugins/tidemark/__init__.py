"""Tidemark: backfill historical time-series data into TimescaleDB hypertables from Airflow."""
