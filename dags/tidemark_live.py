"""Tidemark's live DAGs: one per dataset declared with a live block (documented in tidemark.airflow.live_dag)."""

from tidemark.airflow import factory

globals().update(factory.live(__file__))
