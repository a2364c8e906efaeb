"""Airflow plugin: mounts the Message Center API in the Airflow API server.

Thin on purpose (the package does the work): the API answers under ``/messagecenter``, Campaign's
SOAP interface (``PushEvent``) at ``/nl/jsp/soaprouter.jsp``, where Campaign clients call it; a
"Message Center" page in the UI (Browse menu, ``/messagecenter/ui/``); on a control
deployment its lifespan mirrors ``mc_exec_*`` connections into the archiving registry, and a root
middleware does it right after a connection is written through the UI or REST API.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from messagecenter.airflow.registry_sync import RegistrySyncMiddleware
from messagecenter.api import create_app
from messagecenter.api.main import create_soap_app

_api = create_app(in_airflow=True)


class MessageCenterPlugin(AirflowPlugin):
    """Message Center: intake API and archiving actions under ``/messagecenter``, Campaign's SOAP
    interface under ``/nl``, registry sync."""

    name = "messagecenter"
    fastapi_apps = [
        {"app": _api, "url_prefix": "/messagecenter", "name": "Message Center API"},
        {
            # Shares the intake API's settings, pool and tokens.
            "app": create_soap_app(state=_api.state.mc),
            "url_prefix": "/nl",
            "name": "Message Center SOAP interface (Campaign PushEvent)",
        },
    ]
    # The "Message Center" page in the UI's Browse menu: served by the API app above at
    # /messagecenter/ui/, shown in the UI's frame at /plugin/messagecenter.
    external_views = [
        {
            "name": "Message Center",
            "href": "messagecenter/ui/",
            "url_route": "messagecenter",
            "destination": "nav",
            "category": "browse",
        }
    ]
    fastapi_root_middlewares = [
        {
            "middleware": RegistrySyncMiddleware,
            "args": [],
            "kwargs": {},
            "name": "Message Center registry sync",
        }
    ]
