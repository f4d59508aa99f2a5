"""The backfill report: what was loaded, how fast, and how compact the result is.

Numbers come from the database (ledger, compression log, TimescaleDB's own
compression stats) rather than from task memory, so a resumed run reports the
whole load, not only its last attempt.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from tidemark.timescale.compressor import Chunk
from tidemark.connection import one
from tidemark.model.dataset import Dataset, Hypertable
from tidemark.model.payloads import BatchResultPayload, RefreshedAggregate, ReloadedWindow, Report, ReportAfterwards
from tidemark.model.run_plan import RunPlan
from tidemark.timescale.schema import regclass_text, table_ident
from tidemark.model.timeparse import format_interval


def build_report(
    conn: psycopg.Connection,
    ds: Dataset,
    plan: RunPlan,
    results: Mapping[int, BatchResultPayload | None],
    *,
    reloaded: Sequence[ReloadedWindow] = (),
    left_for_live: Sequence[Chunk] = (),
    refreshed: Sequence[RefreshedAggregate] = (),
    source_checked: Sequence[str] | None = None,
) -> Report:
    """The run's report. Timing and compression counts are this attempt's (a rerun under the same run id is a
    new attempt, ``tidemark.runs.started_at`` its start); sizes and rows in the window are the window's now."""
    run_id, start, end = plan.run_id, plan.start, plan.end
    loaded: dict[str, int] = {t.name: 0 for t in ds.tables}
    for r in results.values():
        if r:
            for name, n in r["rows"].items():
                loaded[name] = loaded.get(name, 0) + int(n)
    for w in reloaded:
        for name, n in w["rows"].items():
            loaded[name] = loaded.get(name, 0) + int(n)
    in_window: dict[str, int] = {t.name: 0 for t in ds.tables}
    for (counts,) in conn.execute(
        "SELECT row_counts FROM tidemark.batch_ledger WHERE dataset = %s AND window_start >= %s AND window_end <= %s",
        (ds.name, start, end),
    ).fetchall():
        for name, n in counts.items():
            in_window[name] = in_window.get(name, 0) + int(n)
    started_at, peak_chunks, peak_bytes = one(conn.execute(
        "SELECT started_at, peak_backlog_chunks, peak_backlog_bytes FROM tidemark.runs WHERE run_id = %s", (run_id,)
    ))
    last_commit = one(conn.execute(
        "SELECT max(committed_at) FROM tidemark.batch_ledger WHERE run_id = %s AND committed_at >= %s",
        (run_id, started_at),
    ))[0]
    now = one(conn.execute("SELECT clock_timestamp()"))[0]  # the tail ends here, before the sizes are measured
    storage = measure_storage(conn, ds, start, end)
    # "Progressive" means compressed while batches were still loading, proven by
    # timestamps, not merely "compressed by the sensor". This attempt's entries only.
    log_rows = conn.execute(
        "SELECT chunk, phase, compressed_at FROM tidemark.compression_log WHERE run_id = %s AND compressed_at >= %s",
        (run_id, started_at),
    ).fetchall()
    during = sum(1 for _, phase, at in log_rows if phase == "progressive" and last_commit and at <= last_commit)
    after_by_sensor = sum(1 for _, phase, at in log_rows if phase == "progressive" and not (last_commit and at <= last_commit))
    final = sum(1 for _, phase, _at in log_rows if phase == "final")
    # The same split for chunks compress_chunk compressed (direct COPY's chunks are logged as written, not compressed).
    later = [(phase, at) for chunk, phase, at in log_rows if chunk not in storage.written_names]
    afterwards: ReportAfterwards = {
        "during_load": sum(1 for phase, at in later if phase == "progressive" and last_commit and at <= last_commit),
        "after_last_batch": sum(1 for phase, at in later if phase == "progressive" and not (last_commit and at <= last_commit)),
        "final_pass": sum(1 for phase, _at in later if phase == "final"),
    }
    last_compress = max((at for _, _, at in log_rows), default=None)
    rows_loaded = sum(loaded.values())
    load_seconds = max((last_commit - started_at).total_seconds(), 0.0) if last_commit else 0.0
    tail = (max(last_compress or now, now) - last_commit).total_seconds() if last_commit else 0.0
    checked = [t.name for t in ds.tables] if source_checked is None else list(source_checked)
    return {
        "run_id": run_id,
        "dataset": ds.name,
        "window": {"start": start.isoformat(), "end": end.isoformat(),
                   "batch_interval": format_interval(plan.batch_interval)},
        "batches": {
            "windows": plan.total_windows,
            "loaded": len(plan.batches),
            "already_loaded": len(plan.skipped),
            "reloaded_after_verification": len(reloaded),
        },
        "rows_loaded": loaded,
        "rows_loaded_total": rows_loaded,
        "rows_in_window": in_window,
        "rows_in_window_total": sum(in_window.values()),
        "load_seconds": round(load_seconds, 2),
        "rows_per_second": round(rows_loaded / load_seconds) if load_seconds > 0 else None,
        "chunks": {
            "in_window": storage.chunks,
            "compressed": storage.compressed,
            "written_compressed": storage.written_compressed,
            "compressed_afterwards": storage.compressed - storage.written_compressed,
            "afterwards": afterwards,
            "compressed_during_load": during,
            "compressed_by_sensor_after_last_batch": after_by_sensor,
            "compressed_in_final_pass": final,
            "left_for_live_ingestion": [c.name for c in left_for_live],
        },
        "bytes": {
            # TimescaleDB's statistics of the chunks compress_chunk compressed (none for direct COPY's chunks).
            "before_compression": storage.before,
            "after_compression": storage.after,
            "ratio": round(storage.before / storage.after, 2) if storage.after else None,
            # Chunks written straight into the columnstore (direct COPY): their size on disk.
            "written_compressed": storage.written_bytes,
            # Every mode: what the window's chunks take, what they stand for uncompressed, and the ratio.
            "stored": storage.stored,
            "uncompressed": storage.uncompressed,
            "uncompressed_from_timescaledb": storage.before,
            "uncompressed_measured": storage.measured_uncompressed,
            "probe_rows": storage.probe_rows,
            "storage_ratio": storage.ratio,
        },
        "write_mode": "direct-to-columnstore COPY" if plan.direct_compress else "classic COPY",
        "peak_uncompressed_backlog": {"chunks": peak_chunks, "bytes": peak_bytes},
        "seconds_from_last_batch_to_fully_compressed": round(tail, 2),
        "retention": list(plan.retention),
        "continuous_aggregates_refreshed": list(refreshed),
        "verified": True,
        "verified_against": {"ledger": True, "source_counts": checked,
                             "not_counted_by_source": [t.name for t in ds.tables if t.name not in checked]},
        "this_attempt_loaded_nothing": not last_commit,
    }


# What a chunk takes on disk: its own relations (an emptied heap after compression, its indexes) plus its
# compressed chunk's. One query over every chunk of the dataset's hypertables intersecting the window.
_STORED = """
SELECT c.hypertable_name, c.chunk_schema, c.chunk_name, c.is_compressed,
       pg_total_relation_size(format('%%I.%%I', c.chunk_schema, c.chunk_name)::regclass)
       + coalesce((SELECT pg_total_relation_size(format('%%I.%%I', cc.schema_name, cc.table_name)::regclass)
                   FROM _timescaledb_catalog.chunk ch JOIN _timescaledb_catalog.chunk cc ON cc.id = ch.compressed_chunk_id
                   WHERE ch.schema_name = c.chunk_schema AND ch.table_name = c.chunk_name), 0)
FROM timescaledb_information.chunks c
WHERE (c.hypertable_schema, c.hypertable_name) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
  AND c.range_end > %s AND c.range_start < %s
"""

PROBE_ROWS = 100_000  # at most this many rows of one chunk are COPYed into the rolled-back probe table


@dataclass(frozen=True)
class Storage:
    """How much the window's chunks take, and the uncompressed size they stand for.

    ``uncompressed`` is TimescaleDB's own ``before_compression_total_bytes``
    for chunks compressed by ``compress_chunk``; chunks written straight into
    the columnstore have no such figure (TimescaleDB 2.23 keeps none), so
    theirs is measured: a sample of their rows is COPYed into an uncompressed
    table with the hypertable's indexes, inside a transaction that is rolled
    back, and its size per row is scaled by the chunks' row counts.
    """

    chunks: int = 0
    compressed: int = 0
    written_compressed: int = 0  # chunks direct COPY wrote compressed (no before/after statistics)
    stored: int = 0  # bytes on disk now, every chunk in the window
    before: int = 0  # TimescaleDB's before/after, chunks compressed by compress_chunk
    after: int = 0
    written_bytes: int = 0  # bytes of the chunks written compressed
    measured_uncompressed: int = 0  # the uncompressed size measured for them
    probe_rows: int = 0
    written_names: frozenset[str] = frozenset()

    @property
    def uncompressed(self) -> int:
        return self.before + self.measured_uncompressed

    @property
    def ratio(self) -> float | None:
        return round(self.uncompressed / self.stored, 2) if self.stored and self.uncompressed else None


def stored_bytes(conn: psycopg.Connection, ds: Dataset, start: datetime, end: datetime) -> int:
    """Bytes on disk of every chunk of the dataset intersecting [start, end): one statement (the sensor's poke)."""
    rows = conn.execute(_STORED, ([t.schema for t in ds.tables], [t.name for t in ds.tables], start, end)).fetchall()
    return sum(int(r[4] or 0) for r in rows)


def measure_storage(conn: psycopg.Connection, ds: Dataset, start: datetime, end: datetime, *,
                    probe_rows: int = PROBE_ROWS) -> Storage:
    """The window's chunks: what they take, what they stand for uncompressed, how many were written compressed.

    The stats function is called once per hypertable with a constant argument
    (joined per chunk it ran once per chunk: 0.7 s for the demo's 48 chunks).
    """
    found = conn.execute(_STORED, ([t.schema for t in ds.tables], [t.name for t in ds.tables], start, end)).fetchall()
    size = {(r[0], r[2]): int(r[4] or 0) for r in found}
    total = Storage()
    for table in ds.tables:
        regclass = regclass_text(conn, table)
        rows = conn.execute(
            "SELECT c.chunk_name, c.range_start, c.range_end, c.is_compressed, s.before_compression_total_bytes,"
            " s.after_compression_total_bytes"
            " FROM timescaledb_information.chunks c"
            " LEFT JOIN chunk_compression_stats(%s::regclass) s"
            "   ON s.chunk_schema = c.chunk_schema AND s.chunk_name = c.chunk_name"
            " WHERE c.hypertable_schema = %s AND c.hypertable_name = %s AND c.range_end > %s AND c.range_start < %s",
            (regclass, table.schema, table.name, start, end),
        ).fetchall()
        # Written compressed by direct COPY: TimescaleDB keeps no before/after stats, only the size.
        written = [(name, s, e) for name, s, e, is_compressed, b, _ in rows if is_compressed and b is None]
        measured, probed = _measure_uncompressed(conn, table, [(s, e) for _, s, e in written], probe_rows) \
            if written else (0, 0)
        total = Storage(
            chunks=total.chunks + len(rows),
            compressed=total.compressed + sum(1 for r in rows if r[3]),
            written_compressed=total.written_compressed + len(written),
            stored=total.stored + sum(size.get((table.name, r[0]), 0) for r in rows),
            before=total.before + sum(int(r[4] or 0) for r in rows),
            after=total.after + sum(int(r[5] or 0) for r in rows),
            written_bytes=total.written_bytes + sum(size.get((table.name, name), 0) for name, _, _ in written),
            measured_uncompressed=total.measured_uncompressed + measured,
            probe_rows=total.probe_rows + probed,
            written_names=total.written_names | {name for name, _, _ in written},
        )
    return total


def _measure_uncompressed(conn: psycopg.Connection, table: Hypertable, chunks: Sequence[tuple[datetime, datetime]],
                          probe_rows: int) -> tuple[int, int]:
    """(bytes the chunks' rows would take uncompressed, rows probed): a rolled-back COPY of one chunk's rows.

    ``chunks`` are the chunks' time ranges; rows are read through the
    hypertable (a chunk table read directly in a merged plan can miss its
    compressed rows). The probe is the fullest chunk's rows (at most
    ``probe_rows``), COPYed (binary, as the loader writes a batch) into a
    temporary table with the hypertable's columns and indexes, sized, and
    rolled back; its bytes per row are scaled by every chunk's rows. A whole
    chunk, not a few thousand rows: a relation grows in bulk extensions, so a
    small probe overstates the bytes per row (1.2-1.5x measured at 5,000-10,000
    rows, 0.98-0.995x for a whole chunk against TimescaleDB's own figure).
    """
    t = sql.Identifier(table.time_column)

    def within(s: datetime, e: datetime) -> sql.Composable:
        return sql.SQL("{t} >= {s} AND {t} < {e}").format(t=t, s=sql.Literal(s), e=sql.Literal(e))

    counts = [int(r[0]) for r in conn.execute(sql.SQL(" UNION ALL ").join(
        sql.SQL("(SELECT count(*) FROM {} WHERE {})").format(table_ident(table), within(s, e)) for s, e in chunks
    )).fetchall()]
    n_rows = sum(counts)
    if n_rows == 0:
        return 0, 0
    fullest = chunks[counts.index(max(counts))]
    sample = sql.SQL("COPY (SELECT * FROM {} WHERE {} ORDER BY {} LIMIT {}) TO STDOUT (FORMAT binary)").format(
        table_ident(table), within(*fullest), t, sql.Literal(probe_rows))
    data = bytearray()
    with conn.cursor().copy(sample) as out:
        for piece in out:
            data += piece
    probe = sql.Identifier("tidemark_size_probe")
    with conn.transaction(force_rollback=True):
        conn.execute(sql.SQL("CREATE TEMPORARY TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING INDEXES) ON COMMIT DROP")
                     .format(probe, table_ident(table)))
        with conn.cursor().copy(sql.SQL("COPY {} FROM STDIN (FORMAT binary)").format(probe)) as into:
            into.write(bytes(data))
        probed, size = one(conn.execute(sql.SQL("SELECT count(*), pg_total_relation_size({}::regclass) FROM {}").format(
            sql.Literal(probe.as_string(conn)), probe)))
    probed = int(probed)
    return (round(int(size) / probed * n_rows) if probed else 0), probed


def human_bytes(n: int | float | None) -> str:
    """1536 -> '1.5 KiB', 63758336 -> '60.8 MiB'."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def storage_line(size: Mapping[str, Any]) -> str:
    """What the window's chunks take and what they stand for (reports from before ``stored`` existed: their sizes)."""
    if "stored" not in size:  # a report written before this field: TimescaleDB's figures and direct COPY's size
        parts = []
        if size.get("before_compression"):
            parts.append(f"{human_bytes(size['before_compression'])} before, {human_bytes(size['after_compression'])} "
                         f"after (ratio {size['ratio']}x)")
        if size.get("written_compressed"):
            parts.append(f"{human_bytes(size['written_compressed'])} written straight into the columnstore")
        return "; ".join(parts) or "-"
    line = f"{human_bytes(size['stored'])} stored"
    if size.get("uncompressed"):
        line += f" for {human_bytes(size['uncompressed'])} uncompressed, ratio {size['storage_ratio']}x"
    if size.get("uncompressed_measured"):
        source = ("TimescaleDB's figure for chunks compressed afterwards, measured for those written compressed"
                  if size.get("uncompressed_from_timescaledb") else "measured")
        line += (f" (uncompressed size {source}: {size.get('probe_rows', 0):,} of their rows COPYed into an "
                 "uncompressed table, rolled back)")
    elif size.get("uncompressed"):
        line += " (uncompressed size: TimescaleDB's before_compression_total_bytes)"
    return line


def chunks_line(c: Mapping[str, Any]) -> str:
    later = c.get("afterwards")
    if later is None:  # a report from before the split
        detail = (f"{c['compressed_during_load']} progressively while batches were loading, "
                  f"{c['compressed_by_sensor_after_last_batch']} by the sensor after the last batch, "
                  f"{c['compressed_in_final_pass']} in the final pass")
    else:
        detail = (f"{c['written_compressed']} written compressed by direct COPY, {c['compressed_afterwards']} compressed "
                  "afterwards" + (f" ({later['during_load']} progressively while batches were loading, "
                                  f"{later['after_last_batch']} by the sensor after the last batch, "
                                  f"{later['final_pass']} in the final pass)" if c["compressed_afterwards"] else ""))
    left = c.get("left_for_live_ingestion") or []
    return (f"{c['compressed']}/{c['in_window']} compressed: {detail}"
            + (f"; {len(left)} left for live ingestion" if left else ""))


def verified_line(report: Mapping[str, Any]) -> str:
    against = report.get("verified_against")
    if not against:
        return "checked against the batch ledger and, where the source counts rows, the source"
    counted, not_counted = against.get("source_counts") or [], against.get("not_counted_by_source") or []
    if not not_counted:
        return "checked against the batch ledger and the source's own count"
    if not counted:
        return "checked against the batch ledger; the source does not count its rows, so not against the source"
    return (f"checked against the batch ledger; against the source's count for {', '.join(counted)} only "
            f"(not counted by the source: {', '.join(not_counted)})")


def format_report(report: Mapping[str, Any]) -> str:
    """A human-readable block for logs, ``make demo`` and ``make load``."""
    if report.get("dry_run"):
        would = report.get("would_load", [])
        return (
            f"DRY RUN {report['dataset']} [{report['start']}, {report['end']}) in batches of {report['batch_interval']}: "
            f"{report['total_windows']} windows, {report['skipped_windows']} already loaded, {len(would)} would load"
            + "".join(f"\n  retention    {h['hypertable']}: drop_after {h['drop_after']}, horizon {h['horizon']}"
                      for h in report.get("retention") or [])
        )
    b = report["batches"]
    peak = report["peak_uncompressed_backlog"]
    w = report["window"]
    rows = ", ".join(f"{k} {v:,}" for k, v in report["rows_loaded"].items())
    nothing = b["loaded"] == 0 and b["reloaded_after_verification"] == 0
    lines = [
        f"Tidemark backfill report - {report['dataset']} [{w['start']}, {w['end']}) in batches of {w['batch_interval']}",
        f"  batches      {b['loaded']} loaded, {b['already_loaded']} already loaded (skipped), "
        f"{b['reloaded_after_verification']} reloaded after verification, {b['windows']} windows in all",
        f"  rows loaded  {report['rows_loaded_total']:,}" + (f" ({rows})" if report["rows_loaded_total"] else ""),
        f"  rows in window {report['rows_in_window_total']:,} ({verified_line(report)})",
        "  speed        -: nothing was loaded by this run" if nothing or not report.get("rows_per_second") else
        f"  speed        {report['rows_per_second']:,} rows/s over {report['load_seconds']} s of loading",
        f"  storage      {storage_line(report['bytes'])}",
        f"  chunks       {chunks_line(report['chunks'])}",
        f"  write mode   {report.get('write_mode', 'classic COPY')}",
        f"  peak uncompressed backlog during the load: {peak['chunks']} chunks ({human_bytes(peak['bytes'])})",
    ]
    if not nothing:
        lines.append(f"  last batch -> fully compressed: {report['seconds_from_last_batch_to_fully_compressed']} s")
    for h in report.get("retention") or []:
        lines.append(f"  retention    {h['hypertable']}: drop_after {h['drop_after']} (job {h['job_id']}), horizon "
                     f"{h['horizon']}; history before it is dropped by the policy")
    for r in report.get("continuous_aggregates_refreshed") or []:
        lines.append(f"  refreshed    continuous aggregate {r['view']} over [{r['start']}, {r['end']}) in {r['seconds']} s")
    if nothing:
        lines.insert(1, "  nothing to load: every window was already loaded (idempotent rerun)")
    return "\n".join(lines)
