"""The AirflowPlugin: a "Tidemark" tab on every DAG run page and a "Tidemark runs" nav entry.

This is the ``airflow.plugins`` entry point of the installed package; the
plugins folder reaches it through ``plugins/tidemark_ui_plugin.py``, which
steps aside when the entry point is installed so the plugin never registers
twice. Airflow's UI offers no per-DAG filter for ``dag_run`` views, so the tab
shows on every DAG's runs and says so for a run that is not Tidemark's.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

from tidemark.ui.app import LazyApp

URL_PREFIX = "/tidemark"


class TidemarkUIPlugin(AirflowPlugin):
    name = "tidemark"
    fastapi_apps: list[Any] = [{"app": LazyApp(), "url_prefix": URL_PREFIX, "name": "Tidemark"}]
    external_views: list[Any] = [
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
