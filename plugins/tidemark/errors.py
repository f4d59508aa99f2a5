"""Exception types shared by every Tidemark module.

A single root class lets DAG code catch "anything Tidemark refused" without
also swallowing unrelated bugs; ``InvalidInput`` marks what the user's input
caused - a parameter, a declaration, a source's query, the source's data, a
rival run over the same window - so its message always says what to change.
Retrying cannot fix any of it: the Airflow layer fails an ``InvalidInput``
at once, and only transient failures (``tidemark.retrying``) are retried.
"""

from __future__ import annotations

__all__ = ["BadRow", "InvalidInput", "SourceRefused", "TidemarkError"]


class TidemarkError(Exception):
    """Root of every error Tidemark raises on purpose."""


class InvalidInput(TidemarkError):
    """A user-supplied value was rejected; the message names it and the fix."""


class BadRow(InvalidInput):
    """A source produced a row that does not fit the table or the batch window."""


class SourceRefused(InvalidInput):
    """A source cannot serve the dataset as declared (a query that cannot run, writes, or lacks columns)."""
