"""Loads the Tidemark UI plugin from the plugins folder, unless the installed package provides it.

When Tidemark is pip-installed, Airflow also finds the plugin through the
package's ``airflow.plugins`` entry point; importing the class here too would
register it twice (Airflow skips the second copy but reports it as an import
error). ``plugins/.airflowignore`` keeps Airflow's folder scan out of the
``tidemark`` package itself, whose modules are a library, not plugin files.
"""

from __future__ import annotations

from importlib.metadata import entry_points


def _installed_as_entry_point() -> bool:
    return any(ep.value.startswith("tidemark.airflow.ui.plugin") for ep in entry_points(group="airflow.plugins"))


if not _installed_as_entry_point():
    from tidemark.airflow.ui.plugin import TidemarkUIPlugin

    __all__ = ["TidemarkUIPlugin"]
