"""What a dataset declaration may say, as pydantic models whose every check runs at the key it is about.

A refusal carries its location because it is raised where that key is
validated (a field validator, or a model validator that names the key), so
``tables[0].columns[2].type`` is known, never guessed afterwards from the
text of an error. Types are strict: ``"100"`` is not an integer and ``"yes"``
not a boolean, so a file that loads means what it says. The rules themselves
(identifiers, column types, intervals, the time column) are the model's
(``tidemark.model``), shared with datasets declared in Python; a source's
keys are its kind's constructor's (``tidemark.sources.registry``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from tidemark.declare.strict_yaml import shown
from tidemark.errors import InvalidInput
from tidemark.model.column_types import parse_type
from tidemark.model.dataset import (
    Column,
    Dataset,
    Hypertable,
    Source,
    check_column_ref,
    check_dataset_name,
    check_identifier,
    check_time_column,
)
from tidemark.model.schedule import DEFAULT_LAG_THRESHOLD, DEFAULT_LIVE_UNIT, Live, parse_schedule
from tidemark.model.timeparse import parse_interval
from tidemark.sources import registry

__all__ = ["ColumnDecl", "DatasetDecl", "TableDecl", "build_source", "got", "refusal", "refused_at"]

# PostgreSQL's own limit on a table's columns, so on segmentby and orderby too; and a bound on a dataset's tables.
MAX_COLUMNS = 1600
MAX_TABLES = 1000


def got(value: object) -> str:
    """The value as written, cut short; only the kind of a mapping or list: a whole table would drown the message."""
    return "a mapping" if isinstance(value, Mapping) else "a list" if isinstance(value, list) else shown(value)


def _at_most(value: object, limit: int, what: str, why: str = "") -> None:
    # Checked before the items: validating 50,000 of them only to refuse their number would take seconds.
    if isinstance(value, list) and len(value) > limit:
        raise refusal(f"has {len(value):,} {what}; at most {limit:,} are allowed{why}")


def refusal(message: str, *loc: str | int, value: object = None) -> ValueError:
    """A refusal ``loc`` below the key being validated, to raise from a validator.

    pydantic-core takes a ValidationError raised in a validator as that
    validator's errors, each located below the validator's own key: the way
    a check made where several keys are known still points at one of them.
    """
    error = PydanticCustomError("declaration", message)
    if not loc:
        return error
    return ValidationError.from_exception_data("declaration", [InitErrorDetails(type=error, loc=loc, input=value)])


@contextmanager
def refused_at(*loc: str | int, value: object = None) -> Iterator[None]:
    """Run one of the model's own checks: its InvalidInput becomes a refusal at this key (or ``loc`` below it)."""
    try:
        yield
    except registry.KeyRefused as exc:  # a source's constructor refusing one key's value: located at that key
        raise refusal(exc.detail, *loc, exc.key) from None
    except InvalidInput as exc:
        raise refusal(str(exc), *loc, value=value) from None


def _context(info: ValidationInfo, key: str) -> Any:
    return (info.context or {}).get(key)


class _Keys(BaseModel):
    """A mapping of a declaration: its own keys only, each value exactly of its type."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, arbitrary_types_allowed=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys_only(cls, data: Any) -> Any:
        # Before the values: a misspelt key (``shema``) is what to show, with the keys it could have been,
        # rather than what its absence causes (another key "is required").
        if isinstance(data, Mapping):
            allowed = sorted(field.alias or name for name, field in cls.model_fields.items())
            for key in data:
                if key not in allowed:
                    raise refusal(f"unknown key (allowed: {', '.join(allowed)})", str(key), value=data[key])
        return data


def build_source(spec: object, base_dir: Path | None) -> Source:
    """A source from its mapping: ``kind`` picks a registered kind, whose constructor's keys the others must be."""
    if not isinstance(spec, dict):
        raise refusal(f"must be a mapping, got {got(spec)}")
    known = registry.kinds()
    kind = spec.get("kind")
    if not isinstance(kind, str) or kind not in known:
        raise refusal(f"must be one of {', '.join(sorted(known))}, got {kind!r}", "kind", value=kind)
    allowed = sorted(known[kind].keys)
    for key in spec:
        if key != "kind" and key not in allowed:
            raise refusal(f"unknown key for a {kind} source (allowed: kind, {', '.join(allowed)})", str(key),
                          value=spec[key])
    with refused_at():  # the constructor's own refusal (a query without its window) concerns the source as a whole
        source = registry.build_source(kind, {k: v for k, v in spec.items() if k != "kind"}, base_dir)
    return source


def _interval(value: object) -> timedelta:
    if not isinstance(value, str):
        raise refusal(f"must be an interval such as '7 days', got {got(value)}")
    with refused_at():
        interval = parse_interval(value)
    return interval


def _names(value: object) -> tuple[str, ...]:
    # One name, or a list of them, as Hypertable takes; a number or a mapping is a mistake, not a name.
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise refusal(f"must be a column name or a list of column names, got {got(value)}")
    _at_most(items, MAX_COLUMNS, "column names", " (a table's columns at most)")
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise refusal(f"must be a column name, got {got(item)}", i, value=item)
    return tuple(items)


# Plain validators see the raw value, so an explicit null is refused like any other wrong value, while a key
# left out keeps None and stays out of the Hypertable, whose defaults are the only ones.
Interval = Annotated[timedelta | None, PlainValidator(_interval)]
ColumnNames = Annotated[tuple[str, ...] | None, PlainValidator(_names)]


class ColumnDecl(_Keys):
    """One of ``tables[i].columns``: the type is stored in its canonical spelling, as the database reports it."""

    name: str
    type: str
    nullable: bool = False

    @field_validator("name")
    @classmethod
    def _identifier(cls, name: str) -> str:
        with refused_at():
            check_identifier(name, "column name")
        return name

    @field_validator("type")
    @classmethod
    def _supported_type(cls, text: str) -> str:
        with refused_at():
            sql = parse_type(text).sql
        return sql

    @property
    def column(self) -> Column:
        return Column(self.name, self.type, self.nullable)


def _table_name(info: ValidationInfo) -> str:
    return str(info.data.get("name", "?"))


def _declared_columns(info: ValidationInfo) -> list[Column] | None:
    """The table's columns, when declared and valid: what time_column, segmentby and orderby must name."""
    columns = info.data.get("columns")
    return [c.column for c in columns] if columns else None


class TableDecl(_Keys):
    """One of ``tables``; validated into its Hypertable, so a table that passes is one the model accepts."""

    # Field order is validation order: the name and columns come first, as the other keys are checked against them.
    name: str
    schema_: str | None = Field(None, alias="schema")
    columns: list[ColumnDecl] | None = None
    time_column: str
    chunk_interval: Interval = None
    compress_after: Interval = None
    segmentby: ColumnNames = None
    orderby: ColumnNames = None
    source: Source | None = None
    _table: Hypertable | None = PrivateAttr(None)

    @field_validator("name", "schema_")
    @classmethod
    def _identifier(cls, name: str | None, info: ValidationInfo) -> str | None:
        with refused_at():
            check_identifier(name, "table name" if info.field_name == "name" else f"table {_table_name(info)!r}: schema")
        return name

    @field_validator("columns", mode="before")
    @classmethod
    def _not_too_many_columns(cls, columns: object) -> object:
        _at_most(columns, MAX_COLUMNS, "columns", " (PostgreSQL's limit)")
        return columns

    @field_validator("columns")
    @classmethod
    def _distinct_columns(cls, columns: list[ColumnDecl] | None) -> list[ColumnDecl] | None:
        if not columns:
            raise refusal("must be a non-empty list (or left out to read the table's)")
        first: dict[str, int] = {}
        for j, c in enumerate(columns):
            if c.name in first:
                raise refusal(f"column {c.name!r} is declared twice (also columns[{first[c.name]}])", j, "name", value=c.name)
            first[c.name] = j
        return columns

    @field_validator("time_column")
    @classmethod
    def _time_column(cls, name: str, info: ValidationInfo) -> str:
        table, columns = _table_name(info), _declared_columns(info)
        with refused_at():
            check_identifier(name, f"table {table!r}: time_column")
            if columns is not None:
                check_column_ref(table, "time_column", name, columns)
                check_time_column(table, next(c for c in columns if c.name == name))
        return name

    @field_validator("segmentby", "orderby")
    @classmethod
    def _column_names(cls, names: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        table, columns, what = _table_name(info), _declared_columns(info), str(info.field_name)
        for i, name in enumerate(names):
            with refused_at(i, value=name):
                check_identifier(name, f"table {table!r}: {what} column")
                if columns is not None:
                    check_column_ref(table, what, name, columns)
        return names

    @field_validator("source", mode="plain")
    @classmethod
    def _own_source(cls, spec: object, info: ValidationInfo) -> Source | None:
        return None if spec is None else build_source(spec, _context(info, "base_dir"))

    @model_validator(mode="after")
    def _hypertable(self) -> TableDecl:
        fields = type(self).model_fields
        declared = {fields[k].alias or k: getattr(self, k) for k in self.model_fields_set}
        if self.columns is not None:
            declared["columns"] = tuple(c.column for c in self.columns)
        with refused_at():  # every key was checked above; what the table still refuses concerns it as a whole
            self._table = Hypertable(**declared)
        return self

    @property
    def table(self) -> Hypertable:
        assert self._table is not None, "set by validation"
        return self._table


def _schedule(value: object) -> str:
    with refused_at():
        schedule = parse_schedule(value)
    return schedule


Schedule = Annotated[str | None, PlainValidator(_schedule)]


class LiveDecl(_Keys):
    """A ``live:`` block: the dataset gets a live DAG, at this schedule, ingesting ``unit`` per transaction."""

    schedule: Schedule = None
    unit: Interval = None
    lag_threshold: Interval = None

    @model_validator(mode="after")
    def _unit_within_threshold(self) -> LiveDecl:
        with refused_at("lag_threshold"):  # both keys are fine alone; the threshold is what to raise
            _ = self.live
        return self

    @property
    def live(self) -> Live:
        return Live(schedule=self.schedule, unit=self.unit or DEFAULT_LIVE_UNIT,
                    lag_threshold=self.lag_threshold or DEFAULT_LAG_THRESHOLD)


class DatasetDecl(_Keys):
    """A whole declaration file, validated into its Dataset (``.dataset``): one that passes needs no check after."""

    # ``tables`` before ``source``: the dataset's source is built only when a table has none of its own.
    name: str
    description: str = ""
    direct_compress: bool | None = None
    schedule: Schedule = None
    live: LiveDecl | None = None
    tables: list[TableDecl]
    source: Source | None = None
    _dataset: Dataset | None = PrivateAttr(None)

    @model_validator(mode="before")
    @classmethod
    def _tables_refine_the_dataset_source(cls, data: Any) -> Any:
        # A table's source without ``kind`` refines the dataset's (its own query on the shared connection). Merged
        # before validation, so whatever is wrong with the merged source is reported at the table's keys.
        if not (isinstance(data, dict) and isinstance(data.get("source"), dict) and isinstance(data.get("tables"), list)):
            return data
        default = data["source"]

        def refined(table: Any) -> Any:
            own = table.get("source") if isinstance(table, dict) else None
            return {**table, "source": {**default, **own}} if isinstance(own, dict) and "kind" not in own else table

        return {**data, "tables": [refined(t) for t in data["tables"]]}

    @field_validator("name")
    @classmethod
    def _dataset_name(cls, name: str) -> str:
        with refused_at():
            check_dataset_name(name)
        return name

    @field_validator("direct_compress", mode="plain")
    @classmethod
    def _direct_compress(cls, value: object) -> bool | None:
        # YAML reads on and off unquoted as booleans; quoted, they say the same.
        modes = {"auto": None, "on": True, "off": False}
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value in modes:
            return modes[value]
        raise refusal(f"must be auto, true or false, got {got(value)}")

    @field_validator("tables", mode="before")
    @classmethod
    def _not_too_many_tables(cls, tables: object) -> object:
        _at_most(tables, MAX_TABLES, "tables")
        return tables

    @field_validator("tables")
    @classmethod
    def _distinct_tables(cls, tables: list[TableDecl]) -> list[TableDecl]:
        if not tables:
            raise refusal("must be a non-empty list of tables")
        first: dict[str, int] = {}
        for i, t in enumerate(tables):
            if t.table.qualified in first:
                raise refusal(f"table {t.table.qualified!r} is declared twice (also tables[{first[t.table.qualified]}])",
                              i, "name", value=t.table.name)
            first[t.table.qualified] = i
        return tables

    @field_validator("source", mode="plain")
    @classmethod
    def _shared_source(cls, spec: object, info: ValidationInfo) -> Source | None:
        tables: list[TableDecl] | None = info.data.get("tables")
        if spec is None or tables is None:
            return None
        if all(t.table.source is not None for t in tables) and isinstance(spec, dict):
            return None  # only refined by the tables' own sources, never a source by itself
        return build_source(spec, _context(info, "base_dir"))

    @model_validator(mode="after")
    def _whole_dataset(self, info: ValidationInfo) -> DatasetDecl:
        for i, t in enumerate(self.tables):
            if t.table.source is None and self.source is None:
                raise refusal("is required: neither this table nor the dataset declares a source",
                              "tables", i, "source")
        live = self.live.live if self.live is not None else None
        with refused_at():  # every key was checked above; what the dataset still refuses concerns it as a whole
            self._dataset = Dataset(name=self.name, tables=tuple(t.table for t in self.tables), source=self.source,
                                    description=self.description, origin=str(_context(info, "origin") or ""),
                                    direct_compress=self.direct_compress, schedule=self.schedule, live=live)
        return self

    @property
    def dataset(self) -> Dataset:
        assert self._dataset is not None, "set by validation"
        return self._dataset
