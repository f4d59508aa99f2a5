"""The demo's dataset: three hypertables of a synthetic ledger stream, filled by one synthetic source."""

from __future__ import annotations

from datetime import timedelta

from tidemark.demo.rows import COLUMNS
from tidemark.demo.synthetic import ledger_source
from tidemark.model.dataset import Column, Dataset, Hypertable
from tidemark.model.schedule import Live

# Each table declares the columns the stream yields for it (``rows.COLUMNS``), in its order,
# with one SQL type a column name wherever it occurs.
_SQL_TYPES = {
    "close_time": "timestamptz",
    "sequence": "bigint",
    "ledger_sequence": "bigint",
    "tx_index": "integer",
    "op_index": "integer",
    "hash": "text",
    "tx_count": "integer",
    "op_count": "integer",
    "total_fees": "bigint",
    "account": "text",
    "fee": "bigint",
    "successful": "boolean",
    "op_type": "text",
    "asset": "text",
    "amount": "bigint",
}
# Per table: its key (close time, then the ledger's, transaction's and operation's numbers) and segmentby.
_LAYOUT: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "ledgers": (("close_time", "sequence"), ()),
    "transactions": (("close_time", "ledger_sequence", "tx_index"), ()),
    "operations": (("close_time", "ledger_sequence", "tx_index", "op_index"), ("op_type",)),
}


def ledgers_dataset(name: str = "ledgers", schema: str = "public", seed: int = 42) -> Dataset:
    """The demo dataset; tests give it their own name and schema to stay isolated.

    Scheduled daily, so ``airflow backfill create --dag-id tidemark_backfill__ledgers`` reruns days (the
    README's CLI reruns), and live every minute in 5-minute units: the demo shows every kind of DAG.
    """
    return Dataset(
        name=name,
        description="Synthetic ledger stream: a ledger about every 5 s, each with transactions and operations.",
        source=ledger_source(seed),
        origin="built in (TIDEMARK_DEMO=on)",
        schedule="@daily",
        live=Live(unit=timedelta(minutes=5), lag_threshold=timedelta(hours=1)),
        tables=tuple(
            Hypertable(
                name=table,
                time_column="close_time",
                columns=tuple(Column(column, _SQL_TYPES[column]) for column in COLUMNS[table]),
                chunk_interval=timedelta(hours=6),
                schema=schema,
                segmentby=segmentby,
                orderby=orderby,
            )
            for table, (orderby, segmentby) in _LAYOUT.items()
        ),
    )
