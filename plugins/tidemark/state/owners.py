"""Which dataset owns each hypertable, recorded in the database and checked before every write.

Every write Tidemark makes replaces a window: it deletes the window's rows,
then copies the new ones. Two datasets declaring the same ``schema.table``
would therefore delete each other's rows, and each one's batch ledger would
go on saying its windows are loaded. The catalogue refuses a second
declaration within one deployment, but two deployments against one server,
or a Python module, can still make one; only the database they share can
arbitrate, so ownership lives in ``tidemark.hypertable_owners``.

A dataset claims its tables when a run is planned (``claim``, before the
schema is created or anything written) and every writing transaction checks
again (``check``), holding a share lock on the owner rows until it commits:
a run planned before another dataset took a table, or before an operator
handed a table over, then fails before deleting anything, and a hand-over
(a DELETE of the owner row) waits for the writes in flight instead of
slipping between their check and their commit.

Tables written before ownership was recorded have no owner row: the first
dataset to claim them after the upgrade gets them, with the rows already
there, whoever wrote those. A deployment where two datasets already share a
table must settle which one keeps it before upgrading (rename the other's
table), or the first to run wins it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg

from tidemark.connection import one
from tidemark.errors import InvalidInput
from tidemark.model.dataset import Hypertable

__all__ = ["NotOwner", "Owner", "check", "claim", "recorded", "refuse_others"]

_COLUMNS = "schema_name, table_name, dataset, claimed_at, claimed_by_run"
_OF_TABLES = (
    f"SELECT {_COLUMNS} FROM tidemark.hypertable_owners"
    " WHERE (schema_name, table_name) IN (SELECT * FROM unnest(%s::text[], %s::text[]))"
)
_INSERT = (
    "INSERT INTO tidemark.hypertable_owners (schema_name, table_name, dataset, claimed_by_run)"
    " SELECT s, t, %s, %s FROM unnest(%s::text[], %s::text[]) AS u(s, t)"
    " ON CONFLICT (schema_name, table_name) DO NOTHING"
)


@dataclass(frozen=True)
class Owner:
    schema: str
    table: str
    dataset: str
    claimed_at: datetime
    claimed_by_run: str

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.table}"


class NotOwner(InvalidInput):
    """A run's dataset does not own a table it would write: retrying cannot change that, so it is an input error."""

    def __init__(self, dataset: str, taken: Sequence[Owner]) -> None:
        self.dataset = dataset
        self.taken = tuple(taken)
        super().__init__(_refusal(dataset, self.taken))


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _refusal(dataset: str, taken: Sequence[Owner]) -> str:
    claims: dict[tuple[str, str, str], list[str]] = {}  # one clause per owner and claim, not per table
    for o in taken:
        claims.setdefault((o.dataset, o.claimed_at.isoformat(timespec="seconds"), o.claimed_by_run), []).append(o.qualified)
    held = "; ".join(
        f"{', '.join(names)} {'is' if len(names) == 1 else 'are'} owned by dataset {owner!r} (claimed {at} by run {run!r})"
        for (owner, at, run), names in claims.items()
    )
    rivals = sorted({o.dataset for o in taken})
    pairs = ", ".join(f"({_literal(o.schema)}, {_literal(o.table)})" for o in taken)
    return (
        f"dataset {dataset!r} may not write its tables: {held}. Refused before writing: two datasets writing one table would "
        "delete each other's rows. Give the table another name or schema in one of the two declarations; or, if "
        f"{' / '.join(repr(r) for r in rivals)} is retired and none of its rows in the table are to be kept, check "
        "that and hand the table over with "
        f"DELETE FROM tidemark.hypertable_owners WHERE dataset IN ({', '.join(_literal(r) for r in rivals)}) "
        f"AND (schema_name, table_name) IN ({pairs})"
    )


def _keys(tables: Iterable[Hypertable]) -> tuple[list[str], list[str]]:
    pairs = sorted({(t.schema, t.name) for t in tables})
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _select(conn: psycopg.Connection, keys: tuple[list[str], list[str]], lock: bool) -> dict[tuple[str, str], Owner]:
    rows = conn.execute(_OF_TABLES + (" FOR SHARE" if lock else ""), keys).fetchall()
    return {(r[0], r[1]): Owner(r[0], r[1], r[2], r[3], r[4]) for r in rows}


def _refuse_others(dataset: str, found: dict[tuple[str, str], Owner]) -> None:
    taken = [o for _, o in sorted(found.items()) if o.dataset != dataset]
    if taken:
        raise NotOwner(dataset, taken)


def recorded(conn: psycopg.Connection, tables: Iterable[Hypertable]) -> dict[tuple[str, str], Owner]:
    """The recorded owner of each of ``tables`` that has one, keyed by (schema, table); writes nothing.

    Empty where the bookkeeping predates ownership (or does not exist yet):
    a dry run asks before anything is created.
    """
    if one(conn.execute("SELECT to_regclass('tidemark.hypertable_owners') IS NULL"))[0]:
        return {}
    return _select(conn, _keys(tables), lock=False)


def refuse_others(conn: psycopg.Connection, dataset: str, tables: Iterable[Hypertable]) -> None:
    """NotOwner if another dataset owns one of ``tables``, without claiming anything (a dry run's question)."""
    _refuse_others(dataset, recorded(conn, tables))


def claim(conn: psycopg.Connection, dataset: str, tables: Iterable[Hypertable], run_id: str) -> None:
    """Own every one of ``tables`` not owned yet, or raise NotOwner naming the datasets that own the others.

    Idempotent for the owner: its later runs leave the first claim (and its
    run id) as it was. Commits on its own, before the caller writes
    anything, so a refused run has changed nothing; a refused claim keeps
    none of the tables it could have taken, so a dataset colliding on one
    table does not walk away owning the rest.
    """
    keys = _keys(tables)
    with conn.transaction():  # rolled back if it raises: a refused claim takes nothing
        conn.execute(_INSERT, (dataset, run_id, *keys))
        _refuse_others(dataset, _select(conn, keys, lock=False))


def check(conn: psycopg.Connection, dataset: str, tables: Iterable[Hypertable], run_id: str) -> None:
    """Inside the caller's writing transaction, before its first write: NotOwner unless ``dataset`` owns ``tables``.

    The owner rows stay share-locked until the caller commits, so a
    hand-over (DELETE or UPDATE of an owner row) waits for this write. A
    table with no owner row (ownership handed back since the run was
    planned, or a run planned before ownership was recorded) is claimed
    here: the first writer owns it, as at plan time. One indexed SELECT
    when every row is there, which is every batch but a run's first.
    """
    keys = _keys(tables)
    found = _select(conn, keys, lock=True)
    if len(found) < len(keys[0]):
        conn.execute(_INSERT, (dataset, run_id, *keys))
        found = _select(conn, keys, lock=True)
    _refuse_others(dataset, found)
