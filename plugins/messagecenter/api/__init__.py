"""The intake API.

Mounted in the Airflow API server by the plugin under ``/messagecenter``, or run on its own for
scale-out: ``uvicorn messagecenter.api:app`` (with ``plugins/`` on ``PYTHONPATH``).
"""

from __future__ import annotations

from typing import Any

from messagecenter.api.main import create_app

__all__ = ["app", "create_app"]


def __getattr__(name: str) -> Any:
    # Built on first access so that importing the package (the plugin does) builds no extra app.
    if name == "app":
        application = create_app()
        globals()["app"] = application
        return application
    raise AttributeError(name)
