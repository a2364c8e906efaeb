"""Airflow plugin: mounts the Message Center intake API in the Airflow API server.

Thin on purpose (the package does the work): the API answers under ``/messagecenter``.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from messagecenter.api import create_app


class MessageCenterPlugin(AirflowPlugin):
    """Message Center: intake API under ``/messagecenter``."""

    name = "messagecenter"
    fastapi_apps = [{"app": create_app(), "url_prefix": "/messagecenter", "name": "Message Center API"}]
