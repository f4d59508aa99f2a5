"""Tidemark: backfill historical time-series data into TimescaleDB hypertables from Airflow.

The public API for declaring datasets in code (YAML files need none of it)::

    from tidemark import Column, Dataset, Hypertable, SqlSource, register

    register(Dataset(
        name="readings",
        tables=(Hypertable("readings", "time", (Column("time", "timestamptz"), Column("v", "real", True)),
                           chunk_interval="1 day", segmentby=("sensor",),
                           source=SqlSource("sensors_db", "SELECT * FROM readings"
                                            " WHERE time >= %(start)s AND time < %(end)s")),),
    ))

What a source must do is documented with its contract, ``tidemark.sources.base``.
"""

from tidemark.declare.catalog import register
from tidemark.model.dataset import Column, Dataset, Hypertable
from tidemark.errors import BadRow
from tidemark.errors import InvalidInput, TidemarkError
from tidemark.sources import FilesSource, PythonSource, RowBatch, Source, SqlSource

__all__ = [
    "BadRow",
    "Column",
    "Dataset",
    "FilesSource",
    "Hypertable",
    "InvalidInput",
    "PythonSource",
    "RowBatch",
    "Source",
    "SqlSource",
    "TidemarkError",
    "register",
]
