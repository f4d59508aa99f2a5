"""The demo: a synthetic ledger stream (``synthetic``) and the dataset it fills (``ledgers``).

Nothing in the core depends on it: where ``TIDEMARK_DEMO=on`` the DAG factory calls
``enable()``, which declares the ``ledgers`` dataset and registers the ``synthetic`` source kind, and ``python -m
tidemark.demo`` (``make demo``) runs the backfill DAG over it. Its source,
``SyntheticLedgers``, is exported from here, not from the ``tidemark`` package
root, so importing the core does not import the demo.

The stream behind the source, one concept a module: ``splitmix`` (the hash),
``pattern`` (what one seed draws), ``rows`` (the tuple reference), ``columns``
(the same rows through numpy into Arrow), ``stream`` (``LedgerSource``: time,
counts, the choice of generator) and ``synthetic`` (the Tidemark source).
"""

from __future__ import annotations

from tidemark.declare import catalog
from tidemark.demo.ledgers import ledgers_dataset
from tidemark.demo.synthetic import SyntheticLedgers, ledger_source
from tidemark.sources import registry

__all__ = ["SyntheticLedgers", "enable"]


def enable() -> None:
    """Offer the demo: the ``synthetic`` source kind and the ``ledgers`` dataset (idempotent).

    Called only where ``TIDEMARK_DEMO=on`` (the DAG factory reads the setting): a production deployment
    never declares the demo's dataset.
    """
    registry.register("synthetic", ledger_source)
    catalog.provide("ledgers", ledgers_dataset)
