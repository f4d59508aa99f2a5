"""Tidemark's catchup DAGs: the generic one and one per declared dataset (documented in tidemark.airflow.catchup_dag)."""

from tidemark.airflow import factory

globals().update(factory.catchup(__file__))
