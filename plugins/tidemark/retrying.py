"""What is worth retrying, and how: one classification and one tenacity policy for all of Tidemark.

Transient errors are named by psycopg's error classes, not SQLSTATE strings,
so a typo cannot silently turn a retry off and the list reads as what it
means. A transient error is one where the same statement may well succeed a
moment later: lost or refused connections, a server shutting down or
restarting, too many clients, a serialization failure, a deadlock, a lock
timeout, a session the server closed for idling. Everything else (bad data,
a missing table, a full disk) fails at once: retrying would only repeat it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import psycopg
import psycopg.errors as pe
import tenacity

from tidemark.connection import DatabaseUnreachable

__all__ = ["TRANSIENT_ERRORS", "is_transient", "policy"]

log = logging.getLogger(__name__)

TRANSIENT_ERRORS: tuple[type[psycopg.Error], ...] = (
    # class 08: the connection failed or was lost
    pe.ConnectionException,
    pe.ConnectionDoesNotExist,
    pe.ConnectionFailure,
    pe.SqlclientUnableToEstablishSqlconnection,
    pe.SqlserverRejectedEstablishmentOfSqlconnection,
    # class 40: the transaction lost a race; running it again is the documented remedy
    pe.SerializationFailure,
    pe.DeadlockDetected,
    # lock_timeout ran out
    pe.LockNotAvailable,
    # the server is shutting down, restarting or not accepting connections yet
    pe.AdminShutdown,
    pe.CrashShutdown,
    pe.CannotConnectNow,
    # the server closed an idle session; a new one will do
    pe.IdleSessionTimeout,
    pe.IdleInTransactionSessionTimeout,
    # every connection slot is taken; one frees up when another client finishes
    pe.TooManyConnections,
)


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, (DatabaseUnreachable, *TRANSIENT_ERRORS)):
        return True
    # A connection that broke client-side (server gone, socket closed) carries no SQLSTATE at all.
    return isinstance(exc, psycopg.OperationalError) and exc.sqlstate is None


def policy(
    *,
    attempts: int,
    backoff_seconds: float,
    what: str,
    retry_if: Callable[[BaseException], bool] = is_transient,
    max_backoff_seconds: float = 30.0,
) -> tenacity.Retrying:
    """Up to ``attempts`` tries, exponential backoff with jitter, only for errors ``retry_if`` accepts.

    The last error is re-raised as itself (not wrapped in tenacity's
    RetryError), so callers handle one failure type whatever the attempt.
    """
    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(attempts),
        wait=tenacity.wait_exponential_jitter(initial=backoff_seconds, max=max_backoff_seconds, jitter=backoff_seconds / 2),
        retry=tenacity.retry_if_exception(retry_if),
        before_sleep=lambda state: log.warning(
            "%s attempt %d failed: %s; retrying in %.2fs", what, state.attempt_number, _describe(state),
            state.next_action.sleep if state.next_action else 0.0,
        ),
        reraise=True,
    )


def _describe(state: tenacity.RetryCallState) -> str:
    exc = state.outcome.exception() if state.outcome else None
    if exc is None:
        return "no error"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"
