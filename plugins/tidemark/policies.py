"""Pausing a dataset's compression policies for a bulk load, and restoring them.

TimescaleDB's bulk-load guidance: a policy that compresses chunks while they
are being loaded turns fast inserts into slow inserts into compressed chunks.
Tidemark records which jobs it switched off so that it restores exactly those,
and only when no other Tidemark run on the dataset still needs them paused.
"""

from __future__ import annotations

import psycopg

from tidemark.datasets import Dataset


def pause(conn: psycopg.Connection, dataset: Dataset, run_id: str) -> list[int]:
    paused: list[int] = []
    with conn.transaction():
        for table in dataset.tables:
            jobs = conn.execute(
                "SELECT job_id, scheduled FROM timescaledb_information.jobs"
                " WHERE proc_name = 'policy_compression' AND hypertable_schema = %s AND hypertable_name = %s",
                (table.schema, table.name),
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
        others = conn.execute(
            "SELECT count(*) FROM tidemark.runs WHERE dataset = %s AND state = 'running' AND run_id <> %s",
            (dataset.name, run_id),
        ).fetchone()[0]
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
        row = conn.execute(
            "SELECT bool_and(scheduled) FROM timescaledb_information.jobs"
            " WHERE proc_name = 'policy_compression' AND hypertable_schema = %s AND hypertable_name = %s",
            (table.schema, table.name),
        ).fetchone()
        out[table.name] = bool(row and row[0])
    return out
