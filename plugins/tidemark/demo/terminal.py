"""A progress bar in the terminal while ``make demo`` / ``make example`` / ``make load`` run a backfill.

A thread polls Tidemark's bookkeeping (``tidemark.runs``, the batch ledger,
through ``state.progress.run_view``) once a second and draws one line on
stderr: batches loaded of planned, rows, bytes stored, elapsed time and ETA.
Before the run has claimed its window it says what it waits for, so the
terminal is never silent while Airflow starts. On a terminal the line is
redrawn in place; otherwise (a log file, CI) a line is written when the
number of loaded batches or the run's state changes, else every ``quiet_every`` seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, TextIO

import psycopg

from tidemark.flows.report import human_bytes
from tidemark.state import progress

__all__ = ["ProgressLine", "bar", "describe"]

WIDTH = 24


def bar(done: int, total: int, width: int = WIDTH) -> str:
    """``[#########...............]`` for done of total (full for an empty plan)."""
    filled = width if total <= 0 else min(width, round(width * done / total))
    return "[" + "#" * filled + "." * (width - filled) + "]"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = round(seconds)
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


def describe(view: dict[str, Any]) -> str:
    """One line for a run view: bar, batches, failures, rows, storage, time."""
    planned, loaded = int(view["planned_batches"]), int(view["loaded_batches"])
    strip = view.get("strip") or []
    failed = sum(1 for c in strip if c.get("status") in ("failed", "retrying"))
    parts = [f"{bar(loaded, planned)} {loaded}/{planned} batches"]
    if planned == 0:
        parts.append("(every window already loaded)")
    if failed:
        parts.append(f"{failed} failed")
    parts.append(f"{view['rows_loaded']:,} rows")
    if view.get("stored_bytes"):
        parts.append(f"{human_bytes(view['stored_bytes'])} stored")
    parts.append(f"{_duration(view.get('elapsed_seconds'))} elapsed")
    if view.get("state") == "running" and view.get("eta_seconds") is not None:
        parts.append(f"ETA {_duration(view['eta_seconds'])}")
    elif view.get("state") != "running":
        parts.append(str(view.get("state")))
    return "  ".join(parts)


class ProgressLine(threading.Thread):
    """Draws the run's progress on ``stream`` until ``stop()``; finds the run as the first one of ``dataset`` claimed
    at or after ``since`` (the database's clock)."""

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection],
        dataset: str,
        since: datetime,
        stream: TextIO,
        *,
        every: float = 1.0,
        quiet_every: float = 10.0,
    ) -> None:
        super().__init__(name="tidemark-progress", daemon=True)
        self._connect = connect
        self._dataset = dataset
        self._since = since
        self._stream = stream
        self._every = every
        self._quiet_every = quiet_every
        self._done = threading.Event()
        self._tty = bool(getattr(stream, "isatty", lambda: False)())
        self._last_text = ""
        self._last_written = 0.0
        self._last_key: object = None
        self.run_id: str | None = None
        self.lines = 0

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=5)
        if self._tty and self._last_text:
            self._stream.write("\n")
            self._stream.flush()

    def _find_run(self, conn: psycopg.Connection) -> str | None:
        try:
            row = conn.execute(
                "SELECT run_id FROM tidemark.runs WHERE dataset = %s AND kind = 'backfill' AND started_at >= %s"
                " ORDER BY started_at LIMIT 1", (self._dataset, self._since),
            ).fetchone()
        except psycopg.errors.UndefinedTable:  # nothing has ever planned here yet
            return None
        return str(row[0]) if row else None

    def _show(self, text: str, key: object) -> None:
        now = time.monotonic()
        if self._tty:
            self._stream.write("\r" + text.ljust(len(self._last_text)))
        elif key != self._last_key or now - self._last_written >= self._quiet_every:
            self._stream.write(text + "\n")
        else:
            return
        self._stream.flush()
        self._last_text, self._last_written, self._last_key = text, now, key
        self.lines += 1

    def run(self) -> None:
        t0 = time.monotonic()
        conn: psycopg.Connection | None = None
        while not self._done.is_set():
            try:
                if conn is None or conn.closed:
                    conn = self._connect()
                if self.run_id is None:
                    self.run_id = self._find_run(conn)
                view = progress.run_view(conn, self.run_id) if self.run_id else None
                if view is None:
                    self._show(f"waiting for Airflow to plan the run ({time.monotonic() - t0:.0f} s)", "waiting")
                else:
                    self._show(describe(view), (view["loaded_batches"], view["state"]))
            except psycopg.Error as exc:  # the progress line is a courtesy: the run goes on without it
                self._show(f"(progress unavailable: {type(exc).__name__})", "unavailable")
                if conn is not None:
                    conn.close()
                conn = None
            self._done.wait(self._every)
        if conn is not None:
            conn.close()
