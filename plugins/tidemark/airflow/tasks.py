"""How a Tidemark task fails: bad input at once and for good, everything else through Airflow's retries."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from tidemark.airflow import heap
from tidemark.errors import InvalidInput

F = TypeVar("F", bound=Callable[..., Any])


def fail_fast(func: F) -> F:
    """Bad input will not fix itself on retry: fail the task at once with the message."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from airflow.sdk.exceptions import AirflowFailException

        heap.freeze_before_task()
        try:
            return func(*args, **kwargs)
        except InvalidInput as exc:
            raise AirflowFailException(f"invalid input: {exc}") from None

    return wrapper  # type: ignore[return-value]
