"""The dataset's TimescaleDB policies around a bulk load: compression, retention, continuous aggregates.

Compression policies (and recompression and compaction ones) are paused for
the load and restored after it.
Retention policies are respected: a window older than a hypertable's
retention horizon is refused, since the policy would silently delete it.
Continuous aggregates over the hypertables are refreshed over the window,
since they do not see backfilled history by themselves.

TimescaleDB's bulk-load guidance: a policy that compresses chunks while they
are being loaded turns fast inserts into slow inserts into compressed chunks.
Tidemark records which jobs it switched off so that it restores exactly those,
and only when no other Tidemark run on the dataset still needs them paused.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql

from tidemark.connection import one
from tidemark.model.dataset import Dataset
from tidemark.errors import InvalidInput, TidemarkError
from tidemark.model.payloads import RefreshedAggregate, RetentionInfo

log = logging.getLogger(__name__)

# The jobs that compress a hypertable's chunks behind Tidemark's back: compression, recompression and
# (TimescaleDB 2.29, made by a table's own tsdb.direct_compress) compaction of unordered chunks.
COMPRESSING_JOBS = ["policy_compression", "policy_recompression", "policy_compaction"]


def pause(conn: psycopg.Connection, dataset: Dataset, run_id: str) -> list[int]:
    paused: list[int] = []
    with conn.transaction():
        for table in dataset.tables:
            jobs = conn.execute(
                "SELECT job_id, scheduled FROM timescaledb_information.jobs"
                " WHERE proc_name = ANY(%s) AND hypertable_schema = %s AND hypertable_name = %s",
                (COMPRESSING_JOBS, table.schema, table.name),
            ).fetchall()
            for job_id, scheduled in jobs:
                if scheduled:
                    conn.execute("SELECT alter_job(%s, scheduled => false)", (job_id,))
                conn.execute(
                    "INSERT INTO tidemark.paused_policies (job_id, dataset, hypertable, paused_by)"
                    " VALUES (%s, %s, %s, %s) ON CONFLICT (job_id) DO NOTHING",
                    (job_id, dataset.name, table.name, run_id),
                )
                paused.append(job_id)
    return paused


def restore(conn: psycopg.Connection, dataset: Dataset, run_id: str) -> list[int]:
    """Switch the paused jobs back on unless another running load of the dataset still needs them off."""
    with conn.transaction():
        others = one(conn.execute(
            "SELECT count(*) FROM tidemark.runs WHERE dataset = %s AND state = 'running' AND run_id <> %s",
            (dataset.name, run_id),
        ))[0]
        if others:
            return []
        jobs = [r[0] for r in conn.execute(
            "DELETE FROM tidemark.paused_policies WHERE dataset = %s RETURNING job_id", (dataset.name,)
        ).fetchall()]
        for job_id in jobs:
            conn.execute(
                "SELECT alter_job(job_id, scheduled => true) FROM timescaledb_information.jobs WHERE job_id = %s",
                (job_id,),
            )
    return jobs


def scheduled(conn: psycopg.Connection, dataset: Dataset) -> dict[str, bool]:
    out: dict[str, bool] = {}
    for table in dataset.tables:
        row = one(conn.execute(
            "SELECT bool_and(scheduled) FROM timescaledb_information.jobs"
            " WHERE proc_name = ANY(%s) AND hypertable_schema = %s AND hypertable_name = %s",
            (COMPRESSING_JOBS, table.schema, table.name),
        ))
        out[table.name] = bool(row and row[0])
    return out


# --------------------------------------------------------------------------- retention


@dataclass(frozen=True)
class RetentionHorizon:
    """A retention policy on one of the dataset's hypertables, and the oldest time it keeps right now."""

    hypertable: str
    job_id: int
    drop_after: str
    horizon: datetime
    scheduled: bool

    def describe(self) -> str:
        return (
            f"hypertable {self.hypertable} has retention policy job {self.job_id} (drop_after {self.drop_after}"
            + ("" if self.scheduled else ", paused")
            + f"): its chunks ending before {self.horizon.isoformat()} are dropped on the policy's next run"
        )

    def to_dict(self) -> RetentionInfo:
        return {"hypertable": self.hypertable, "job_id": self.job_id, "drop_after": self.drop_after,
                "horizon": self.horizon.isoformat(), "scheduled": self.scheduled}


def retention_horizons(conn: psycopg.Connection, dataset: Dataset) -> list[RetentionHorizon]:
    """Every retention policy (``add_retention_policy``) on the dataset's hypertables, with its current horizon.

    Only ``drop_after`` policies are horizons in time: ``drop_created_before``
    drops by chunk creation time, which a backfill's fresh chunks never meet.
    """
    out: list[RetentionHorizon] = []
    for table in dataset.tables:
        rows = conn.execute(
            "SELECT job_id, config->>'drop_after', now() - (config->>'drop_after')::interval, scheduled"
            " FROM timescaledb_information.jobs"
            " WHERE proc_name = 'policy_retention' AND hypertable_schema = %s AND hypertable_name = %s"
            " AND jsonb_typeof(config->'drop_after') = 'string' ORDER BY job_id",
            (table.schema, table.name),
        ).fetchall()
        out.extend(RetentionHorizon(f"{table.schema}.{table.name}", int(r[0]), str(r[1]), r[2], bool(r[3])) for r in rows)
    return out


def refuse_beyond_retention(horizons: list[RetentionHorizon], start: datetime, *, allowed: bool) -> None:
    """Refuse a window reaching behind a retention horizon: it would be loaded, verified, then silently dropped."""
    behind = [h for h in horizons if start < h.horizon]
    if not behind or allowed:
        return
    latest = max(h.horizon for h in behind)
    raise InvalidInput(
        "; ".join(h.describe() for h in behind)
        + f". The window starts at {start.isoformat()}, so its history before {latest.isoformat()} would be loaded "
        "and then deleted. Start the window at or after that time, lengthen or remove the policy "
        "(remove_retention_policy, then add_retention_policy with a longer drop_after), or set the param "
        f"{ALLOW_PARAM} to true to load it anyway"
    )


ALLOW_PARAM = "allow_older_than_retention"


# --------------------------------------------------------------------------- continuous aggregates


@dataclass(frozen=True)
class ContinuousAggregate:
    view: str  # schema.name
    on: str  # the hypertable (or, for a hierarchical one, the continuous aggregate) it is built on
    ident: sql.Identifier
    bucket_width: str | None


def continuous_aggregates(conn: psycopg.Connection, dataset: Dataset) -> list[ContinuousAggregate]:
    """Continuous aggregates over the dataset's hypertables, and over those (hierarchical), parents first."""
    found: list[ContinuousAggregate] = []
    frontier = [(t.schema, t.name, f"{t.schema}.{t.name}") for t in dataset.tables]
    seen: set[str] = set()
    while frontier:
        following: list[tuple[str, str, str]] = []
        for schema, name, shown in frontier:
            rows = conn.execute(
                "SELECT ca.view_schema, ca.view_name, ca.materialization_hypertable_schema,"
                " ca.materialization_hypertable_name, bf.bucket_width"
                " FROM timescaledb_information.continuous_aggregates ca"
                " JOIN _timescaledb_catalog.hypertable h"
                "   ON h.schema_name = ca.materialization_hypertable_schema AND h.table_name = ca.materialization_hypertable_name"
                " LEFT JOIN _timescaledb_catalog.continuous_aggs_bucket_function bf ON bf.mat_hypertable_id = h.id"
                " WHERE ca.hypertable_schema = %s AND ca.hypertable_name = %s ORDER BY ca.view_schema, ca.view_name",
                (schema, name),
            ).fetchall()
            for view_schema, view_name, mat_schema, mat_name, width in rows:
                view = f"{view_schema}.{view_name}"
                if view in seen:
                    continue
                seen.add(view)
                found.append(ContinuousAggregate(view, shown, sql.Identifier(view_schema, view_name), width))
                following.append((mat_schema, mat_name, view))
        frontier = following
    return found


def refresh_continuous_aggregates(
    conn: psycopg.Connection, dataset: Dataset, start: datetime, end: datetime
) -> list[RefreshedAggregate]:
    """Refresh every continuous aggregate over the dataset's hypertables for the window [start, end).

    The window is widened by one bucket on each side: TimescaleDB refreshes
    only buckets lying wholly inside it, and a bucket straddling the window's
    edge holds backfilled rows too. ``refresh_continuous_aggregate`` cannot
    run inside a transaction block, so this needs the autocommit connection
    Tidemark always opens.
    """
    if not conn.autocommit:
        raise TidemarkError("refresh_continuous_aggregate must run outside a transaction block (autocommit)")
    refreshed: list[RefreshedAggregate] = []
    for cagg in continuous_aggregates(conn, dataset):
        width = cagg.bucket_width
        lo, hi = one(conn.execute(
            "SELECT %s::timestamptz - coalesce(%s::interval, '0'::interval), %s::timestamptz + coalesce(%s::interval, '0'::interval)",
            (start, width, end, width),
        )) or (start, end)
        t0 = time.perf_counter()
        conn.execute(
            "CALL refresh_continuous_aggregate(%s::regclass, %s::timestamptz, %s::timestamptz)",
            (cagg.ident.as_string(conn), lo, hi),
        )
        refreshed.append({"view": cagg.view, "on": cagg.on, "bucket_width": width, "start": lo.isoformat(),
                          "end": hi.isoformat(), "seconds": round(time.perf_counter() - t0, 3)})
        log.info("refreshed continuous aggregate %s over [%s, %s)", cagg.view, lo.isoformat(), hi.isoformat())
    return refreshed
