"""Garbage-collector tuning for the processes that parse the DAG folder to run one DAG (task runners, dags test).

Measured: without it, full collections re-traverse Airflow's whole import
graph (~400,000-700,000 objects) several times per run; see each function.
"""

from __future__ import annotations

import atexit
import gc


_exit_hook_registered = False


def freeze_if_parsed_to_run() -> None:
    """Keep the garbage collector off the heap a process built before it runs a task of this DAG.

    Airflow sets the parsing context's ``dag_id`` only in processes that
    parse the DAG folder in order to run one DAG and then end: a task
    runner (which leaves with ``os._exit``) and the CLI (``airflow dags
    test``, ``tasks test``). By then such a process holds Airflow's whole
    import graph (~400,000 objects, nearly all of it alive until exit), and
    every full collection after that re-traversed it: under ``dags test``
    six of them, 0.12-0.38 s each, 1.4 s in all. Frozen, they traverse only
    what was allocated since. A dag-processor child, the scheduler, the
    triggerer or a test session parses without that context and is left
    alone.
    """
    global _parsed_to_run
    from airflow.sdk import get_parsing_context

    if get_parsing_context().dag_id is not None:
        _parsed_to_run = True
        gc.freeze()


_parsed_to_run = False


def freeze_before_task() -> None:
    """In such a process, freeze again as a task starts: Airflow's own start of the task is behind it too.

    Under ``dags test`` the first task builds the in-process execution API
    (~300,000 objects) before its callable runs; the batches' collections
    then skip those as well.
    """
    if _parsed_to_run:
        gc.freeze()


def skip_collections_at_exit() -> None:
    """Spare the process that parsed the DAGs CPython's garbage collection passes at interpreter exit.

    Tearing the interpreter down, CPython runs full cyclic collections over
    every object still alive; in a process that imported Airflow and ran
    tasks (``airflow dags test``: the execution API's FastAPI app and its
    pydantic schemas, ~700,000 objects) that took 1.4-1.6 s after the last
    task, a tenth of the whole command. Freezing the heap in an atexit hook
    moves those objects out of the collector's reach; the operating system
    frees them with the process. Every atexit handler still runs (logging
    flush, ORM dispose, the execution API's loop shutdown), and so does
    reference-count deallocation; only finalizers of objects caught in
    reference cycles at shutdown do not run, which CPython does not promise
    anyway.
    """
    global _exit_hook_registered
    if not _exit_hook_registered:
        _exit_hook_registered = True
        atexit.register(gc.freeze)
