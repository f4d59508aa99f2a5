"""Exception types shared by every Tidemark module.

A single root class lets DAG code catch "anything Tidemark refused" without
also swallowing unrelated bugs; ``InvalidInput`` marks the subset that the
user can fix by changing a parameter, so its message always says what to change.
"""

from __future__ import annotations

__all__ = ["BadRow", "InvalidInput", "TidemarkError"]


class TidemarkError(Exception):
    """Root of every error Tidemark raises on purpose."""


class InvalidInput(TidemarkError):
    """A user-supplied value was rejected; the message names it and the fix."""


class BadRow(TidemarkError):
    """A source produced a row that does not fit the table or the batch window."""
