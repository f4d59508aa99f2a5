"""Tidemark's backfill DAGs: the generic one and one per declared dataset (documented in tidemark.airflow.backfill_dag)."""

from tidemark.airflow import factory

globals().update(factory.backfill(__file__))
