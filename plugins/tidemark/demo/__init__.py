"""The demo: a synthetic ledger stream (``synthetic``) and the dataset it fills (``ledgers``).

Nothing in the core depends on it: the Airflow layer declares the ``ledgers``
dataset and registers the ``synthetic`` source kind, and ``python -m
tidemark.demo`` (``make demo``) runs the backfill DAG over it.
"""

from __future__ import annotations

__all__ = ["enable"]


def enable() -> None:
    """Offer the demo: the ``synthetic`` source kind and the ``ledgers`` dataset (idempotent)."""
    from tidemark.declare import catalog
    from tidemark.demo.ledgers import ledgers_dataset
    from tidemark.demo.synthetic import ledger_source
    from tidemark.sources import registry

    registry.register("synthetic", ledger_source)
    catalog.provide("ledgers", ledgers_dataset)
