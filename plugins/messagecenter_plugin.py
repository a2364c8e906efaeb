"""Airflow plugin: mounts the Message Center API in the Airflow API server.

Thin on purpose (the package does the work): the API answers under ``/messagecenter``; on a control
deployment its lifespan mirrors ``mc_exec_*`` connections into the archiving registry, and a root
middleware does it right after a connection is written through the UI or REST API.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from messagecenter.airflow.registry_sync import RegistrySyncMiddleware
from messagecenter.api import create_app


class MessageCenterPlugin(AirflowPlugin):
    """Message Center: intake API and archiving actions under ``/messagecenter``, registry sync."""

    name = "messagecenter"
    fastapi_apps = [
        {"app": create_app(in_airflow=True), "url_prefix": "/messagecenter", "name": "Message Center API"}
    ]
    fastapi_root_middlewares = [
        {
            "middleware": RegistrySyncMiddleware,
            "args": [],
            "kwargs": {},
            "name": "Message Center registry sync",
        }
    ]
