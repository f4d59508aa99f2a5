"""What a run does, step by step: plan, batches, watermark and progressive compression, verify, report.

Backfill, catchup and live, each a sequence of plain functions over a
connection factory; the Airflow layer calls one per task.
"""
