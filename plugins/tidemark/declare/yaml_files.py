"""Datasets declared in YAML files: one file per dataset, checked key by key.

Every error names the file and the key path (``tables[0].columns[2].type``),
so a user can fix a declaration without reading Tidemark's code; a file that
fails is refused on its own and never stops the other datasets from being
offered.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tidemark.model.dataset import Column, Dataset, Hypertable
from tidemark.errors import InvalidInput
from tidemark.sources import registry
from tidemark.model.dataset import Source
from tidemark.model.timeparse import parse_interval

DATASET_KEYS = frozenset({"name", "description", "source", "tables", "direct_compress"})
_DIRECT = {"auto": None, True: True, False: False, "on": True, "off": False}
TABLE_KEYS = frozenset({"name", "schema", "time_column", "chunk_interval", "segmentby", "orderby", "columns", "source",
                        "compress_after"})
COLUMN_KEYS = frozenset({"name", "type", "nullable"})


class DeclarationError(InvalidInput):
    """A dataset declaration was refused; the message names where and which key."""


def _fail(where: str, key: str, message: str) -> DeclarationError:
    return DeclarationError(f"{where}: key {key}: {message}" if key else f"{where}: {message}")


def _mapping(value: Any, where: str, key: str, allowed: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(where, key or "(top level)", f"must be a mapping, got {type(value).__name__}")
    for k in value:
        if k not in allowed:
            raise _fail(where, f"{key}.{k}" if key else str(k), f"unknown key (allowed: {', '.join(sorted(allowed))})")
    return value


def _source(spec: Any, default: Mapping[str, Any] | None, where: str, key: str, base_dir: Path) -> Source | None:
    if spec is None:
        return None
    if not isinstance(spec, Mapping):
        raise _fail(where, key, f"must be a mapping, got {type(spec).__name__}")
    merged = dict(spec)
    if default is not None and "kind" not in merged:
        merged = {**default, **spec}  # a table's partial source refines the dataset's (e.g. its own query)
    kind = merged.get("kind")
    known = registry.kinds()
    if not isinstance(kind, str) or kind not in known:
        raise _fail(where, f"{key}.kind", f"must be one of {', '.join(sorted(known))}, got {kind!r}")
    for k in merged:
        if k != "kind" and k not in known[kind].keys:
            raise _fail(where, f"{key}.{k}", f"unknown key for a {kind} source (allowed: kind, "
                                             f"{', '.join(sorted(known[kind].keys))})")
    try:
        return registry.from_spec(merged, base_dir)
    except InvalidInput as exc:
        raise _fail(where, key, str(exc)) from None


def load_dataset(data: Any, where: str, base_dir: Path) -> Dataset:
    top = _mapping(data, where, "", DATASET_KEYS)
    for required in ("name", "tables"):
        if required not in top:
            raise _fail(where, required, "is required")
    name = top["name"]
    description = top.get("description", "")
    if not isinstance(description, str):
        raise _fail(where, "description", "must be a string")
    default = top.get("source")
    if default is not None and not isinstance(default, Mapping):
        raise _fail(where, "source", "must be a mapping")
    shared: Source | None = None
    raw_tables = top["tables"]
    if not isinstance(raw_tables, list) or not raw_tables:
        raise _fail(where, "tables", "must be a non-empty list of tables")
    tables: list[Hypertable] = []
    for i, raw in enumerate(raw_tables):
        key = f"tables[{i}]"
        t = _mapping(raw, where, key, TABLE_KEYS)
        for required in ("name", "time_column"):
            if required not in t:
                raise _fail(where, f"{key}.{required}", "is required")
        columns = None
        if "columns" in t:
            if not isinstance(t["columns"], list) or not t["columns"]:
                raise _fail(where, f"{key}.columns", "must be a non-empty list (or left out to read the table's)")
            columns = []
            for j, rc in enumerate(t["columns"]):
                ckey = f"{key}.columns[{j}]"
                c = _mapping(rc, where, ckey, COLUMN_KEYS)
                for required in ("name", "type"):
                    if required not in c:
                        raise _fail(where, f"{ckey}.{required}", "is required")
                if not isinstance(c.get("nullable", False), bool):
                    raise _fail(where, f"{ckey}.nullable", "must be true or false")
                try:
                    columns.append(Column(c["name"], c["type"], c.get("nullable", False)))
                except InvalidInput as exc:
                    field = "name" if str(exc).startswith("column name") else "type"
                    raise _fail(where, f"{ckey}.{field}", str(exc)) from None
        own = _source(t.get("source"), default, where, f"{key}.source", base_dir)
        kwargs: dict[str, Any] = {"name": t["name"], "time_column": t["time_column"], "columns": columns, "source": own}
        for opt in ("schema", "segmentby", "orderby"):
            if opt in t:
                kwargs[opt] = t[opt]
        for opt in ("chunk_interval", "compress_after"):
            if opt in t:
                try:
                    kwargs[opt] = parse_interval(str(t[opt]))
                except InvalidInput as exc:
                    raise _fail(where, f"{key}.{opt}", str(exc)) from None
        try:
            tables.append(Hypertable(**kwargs))
        except InvalidInput as exc:
            raise _fail(where, _guess_key(key, str(exc)), str(exc)) from None
    if default is not None and any(t.source is None for t in tables):
        shared = _source(default, None, where, "source", base_dir)
    raw_direct = top.get("direct_compress", "auto")
    if not isinstance(raw_direct, (bool, str)) or raw_direct not in _DIRECT:
        raise _fail(where, "direct_compress", f"must be auto, true or false, got {raw_direct!r}")
    try:
        return Dataset(name=name, tables=tuple(tables), source=shared, description=description, origin=where,
                       direct_compress=_DIRECT[raw_direct])
    except InvalidInput as exc:
        raise _fail(where, "name" if "dataset name" in str(exc) else "tables", str(exc)) from None


def _guess_key(prefix: str, message: str) -> str:
    for key in ("time_column", "chunk_interval", "compress_after", "segmentby", "orderby", "schema", "columns"):
        if key in message:
            return f"{prefix}.{key}"
    return f"{prefix}.name"


def load_file(path: Path) -> Dataset:
    where = f"dataset file {path}"
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise DeclarationError(f"{where}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        raise DeclarationError(f"{where}: not valid YAML: {exc}") from None
    return load_dataset(data, where, path.parent)
