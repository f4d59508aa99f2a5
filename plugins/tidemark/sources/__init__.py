"""Where a dataset's rows come from: one module per kind, registered in one place (``registry``).

* ``sql`` - any PostgreSQL-protocol database behind an Airflow connection;
* ``files`` - Parquet or CSV files, local or on object storage;
* ``python`` - the user's own function.

The demo's ``synthetic`` kind registers itself from ``tidemark.demo``. What
a source must do is documented on :class:`tidemark.model.dataset.Source`;
``registry.from_spec`` builds one from a declaration's ``source`` mapping.
"""

from __future__ import annotations

from tidemark.model.dataset import RowBatch, Source
from tidemark.sources import registry
from tidemark.sources.files import FilesSource
from tidemark.sources.python import PythonSource
from tidemark.sources.registry import from_spec
from tidemark.sources.sql import SqlSource

__all__ = ["FilesSource", "PythonSource", "RowBatch", "Source", "SqlSource", "from_spec", "registry"]

registry.register("sql", SqlSource)
registry.register("files", FilesSource)
registry.register("python", PythonSource)
