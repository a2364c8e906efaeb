"""Campaign's SOAP push interface, ``nms:rtEvent`` / ``nms:batchEvent`` ``PushEvent`` and ``PushEvents``,
without HTTP: reading requests (:mod:`.envelope`), mapping XML events to the REST push contract
(:mod:`.events`), and writing answers (:mod:`.responses`), faults (:mod:`.faults`) and WSDL
(:mod:`.wsdl`) as a Campaign server does. The API serves it at ``/nl/jsp/soaprouter.jsp``.
"""

from __future__ import annotations

from messagecenter.core.types import Queue
from messagecenter.intake.soap.envelope import SERVICES, SoapCall, parse_action, parse_call
from messagecenter.intake.soap.events import EventRefused, ctx_from_xml, decode_events, event_dict
from messagecenter.intake.soap.faults import SoapFault

# The queue of each event service.
EVENT_SERVICES: dict[str, Queue] = {"nms:rtEvent": "rt", "nms:batchEvent": "batch"}

__all__ = [
    "EVENT_SERVICES",
    "SERVICES",
    "EventRefused",
    "SoapCall",
    "SoapFault",
    "ctx_from_xml",
    "decode_events",
    "event_dict",
    "parse_action",
    "parse_call",
]
