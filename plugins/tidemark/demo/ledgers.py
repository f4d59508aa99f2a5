"""The demo's dataset: three hypertables of a synthetic ledger stream, filled by one synthetic source."""

from __future__ import annotations

from datetime import timedelta

from tidemark.demo.synthetic import ledger_source
from tidemark.model.dataset import Column, Dataset, Hypertable


def ledgers_dataset(name: str = "ledgers", schema: str = "public", seed: int = 42) -> Dataset:
    """The demo dataset; tests give it their own name and schema to stay isolated."""
    six_hours = timedelta(hours=6)
    ts = Column("close_time", "timestamptz")
    return Dataset(
        name=name,
        description="Synthetic ledger stream: a ledger about every 5 s, each with transactions and operations.",
        source=ledger_source(seed),
        origin="built in",
        tables=(
            Hypertable(
                name="ledgers",
                time_column="close_time",
                columns=(
                    ts,
                    Column("sequence", "bigint"),
                    Column("hash", "text"),
                    Column("tx_count", "integer"),
                    Column("op_count", "integer"),
                    Column("total_fees", "bigint"),
                ),
                chunk_interval=six_hours,
                schema=schema,
                orderby=("close_time", "sequence"),
            ),
            Hypertable(
                name="transactions",
                time_column="close_time",
                columns=(
                    ts,
                    Column("ledger_sequence", "bigint"),
                    Column("tx_index", "integer"),
                    Column("hash", "text"),
                    Column("account", "text"),
                    Column("fee", "bigint"),
                    Column("op_count", "integer"),
                    Column("successful", "boolean"),
                ),
                chunk_interval=six_hours,
                schema=schema,
                orderby=("close_time", "ledger_sequence", "tx_index"),
            ),
            Hypertable(
                name="operations",
                time_column="close_time",
                columns=(
                    ts,
                    Column("ledger_sequence", "bigint"),
                    Column("tx_index", "integer"),
                    Column("op_index", "integer"),
                    Column("op_type", "text"),
                    Column("asset", "text"),
                    Column("amount", "bigint"),
                ),
                chunk_interval=six_hours,
                schema=schema,
                segmentby=("op_type",),
                orderby=("close_time", "ledger_sequence", "tx_index", "op_index"),
            ),
        ),
    )
