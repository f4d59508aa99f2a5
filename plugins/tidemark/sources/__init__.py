"""Where a dataset's rows come from: one module per kind, one contract for all (``tidemark.sources.base``).

* ``sql`` - any PostgreSQL-protocol database behind an Airflow connection;
* ``files`` - Parquet or CSV files, local or on object storage;
* ``python`` - the user's own function;
* ``synthetic`` - the built-in deterministic ledger stream of the demo.

``from_spec`` builds one from a declaration's ``source`` mapping (YAML).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tidemark.errors import InvalidInput
from tidemark.sources.base import RowBatch, Source
from tidemark.sources.files import FilesSource
from tidemark.sources.python import PythonSource
from tidemark.sources.sql import SqlSource
from tidemark.sources.synthetic import SyntheticLedgers, ledger_source

__all__ = ["FilesSource", "PythonSource", "RowBatch", "Source", "SqlSource", "SyntheticLedgers", "from_spec", "KEYS"]

# The keys each kind takes besides `kind` (YAML declarations are checked against these).
KEYS: dict[str, frozenset[str]] = {
    "sql": frozenset({"conn_id", "query", "table", "schema", "tip_query", "count", "fetch_size"}),
    "files": frozenset({"url", "format", "delimiter", "null", "count"}),
    "python": frozenset({"callable", "tip", "count"}),
    "synthetic": frozenset({"seed"}),
}


def from_spec(spec: Mapping[str, Any], base_dir: Path | None = None) -> Source:
    kind = spec.get("kind")
    if kind not in KEYS:
        raise InvalidInput(f"source kind must be one of {', '.join(KEYS)}, got {kind!r}")
    unknown = sorted(set(spec) - KEYS[kind] - {"kind"})
    if unknown:
        raise InvalidInput(f"unknown key {unknown[0]!r} for a {kind} source (it takes {', '.join(sorted(KEYS[kind]))})")
    required = {"sql": "conn_id", "files": "url", "python": "callable"}.get(kind)
    if required and required not in spec:
        raise InvalidInput(f"a {kind} source needs the key {required!r}")
    args = {k: v for k, v in spec.items() if k != "kind"}
    try:
        if kind == "sql":
            return SqlSource(**args)
        if kind == "files":
            return FilesSource(**args, base_dir=base_dir)
        if kind == "python":
            return PythonSource(**args)
        seed = args.get("seed", 42)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InvalidInput(f"synthetic seed must be an integer, got {seed!r}")
        return ledger_source(seed)
    except TypeError as exc:
        raise InvalidInput(f"{kind} source: {exc}") from None
