"""The AirflowPlugin: a "Tidemark" tab on every DAG run page and a "Tidemark runs" nav entry.

This is the ``airflow.plugins`` entry point of the installed package; the
plugins folder reaches it through ``plugins/tidemark_ui_plugin.py``, which
steps aside when the entry point is installed so the plugin never registers
twice. Airflow's UI offers no per-DAG filter for ``dag_run`` views, so the tab
shows on every DAG's runs and says so for a run that is not Tidemark's.
"""

from __future__ import annotations

import threading
from typing import Any

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/tidemark"


class LazyApp:
    """An ASGI app that builds the FastAPI app (``tidemark.airflow.ui.app``) on its first request.

    Airflow loads plugins in every component, task processes included (for
    macros); only the API server serves requests, so only it imports FastAPI and
    the API's security machinery.
    """

    def __init__(self) -> None:
        self._app: Any = None
        self._lock = threading.Lock()

    @property
    def app(self) -> Any:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    from tidemark.airflow.ui.app import create_app

                    self._app = create_app()
        return self._app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


class TidemarkUIPlugin(AirflowPlugin):
    name = "tidemark"
    # Plain class attributes, as AirflowPlugin declares them (a ClassVar would not type-check).
    fastapi_apps: list[Any] = [{"app": LazyApp(), "url_prefix": URL_PREFIX, "name": "Tidemark"}]  # noqa: RUF012
    external_views: list[Any] = [  # noqa: RUF012
        {
            "name": "Tidemark",
            "href": URL_PREFIX + "/run?dag_id={DAG_ID}&run_id={RUN_ID}",
            "destination": "dag_run",
            "url_route": "tidemark",
            "icon": URL_PREFIX + "/static/icon.svg",
        },
        {
            "name": "Tidemark runs",
            "href": URL_PREFIX + "/runs",
            "destination": "nav",
            "category": "browse",
            "url_route": "tidemark-runs",
            "icon": URL_PREFIX + "/static/icon.svg",
        },
    ]
