"""Successful answers, written exactly as a Campaign server writes them.

Clients depend on the form, not only on the infoset: Adobe's JavaScript SDK finds the answer element
by its exact node name (``PushEventResponse``, unprefixed) and the envelope parts by their qualified
names (``SOAP-ENV:Body``), and checks that ``plId`` is typed ``xsd:long``; .NET clients look ``plId``
up in the service's namespace (``urn:nms:rtEvent``); Adobe's own samples strip the prolog by exact
match (``<?xml version='1.0'?>``). So every answer is:

.. code-block:: xml

    <?xml version='1.0'?>
    <SOAP-ENV:Envelope xmlns:xsd='http://www.w3.org/2001/XMLSchema'
      xmlns:xsi='http://www.w3.org/2001/XMLSchema-instance' xmlns:ns='urn:nms:rtEvent'
      xmlns:SOAP-ENV='http://schemas.xmlsoap.org/soap/envelope/'>
    <SOAP-ENV:Body>
    <PushEventResponse xmlns='urn:nms:rtEvent'
      SOAP-ENV:encodingStyle='http://schemas.xmlsoap.org/soap/encoding/'>
    <plId xsi:type='xsd:long'>72057594037935966</plId>
    </PushEventResponse>
    </SOAP-ENV:Body>
    </SOAP-ENV:Envelope>
"""

from __future__ import annotations

from collections.abc import Iterable

PROLOG = "<?xml version='1.0'?>\n"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP_ENCODING = "http://schemas.xmlsoap.org/soap/encoding/"
LITERAL_XML = "http://xml.apache.org/xml-soap/literalxml"
XSD = "http://www.w3.org/2001/XMLSchema"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
# Campaign answers the methods of the xtk:persist interface (GetEntityIfMoreRecent) in this namespace.
PERSIST_NS = "urn:wpp:default"
CONTENT_TYPE = "text/xml; charset=utf-8"

_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"})


def escape(text: str) -> str:
    """``text`` for an XML text node or a double-quoted attribute value."""
    return text.translate(_ESCAPES)


def method_response(namespace: str, method: str, content: str) -> bytes:
    """The answer of ``method``: its output parameters (``content``, XML) in ``<{method}Response>``."""
    return (
        f"{PROLOG}<SOAP-ENV:Envelope xmlns:xsd='{XSD}' xmlns:xsi='{XSI}' xmlns:ns='{namespace}' "
        f"xmlns:SOAP-ENV='{SOAP_ENV}'>\n<SOAP-ENV:Body>\n"
        f"<{method}Response xmlns='{namespace}' SOAP-ENV:encodingStyle='{SOAP_ENCODING}'>\n"
        f"{content}</{method}Response>\n</SOAP-ENV:Body>\n</SOAP-ENV:Envelope>\n"
    ).encode()


def _document(name: str, xml: str) -> str:
    """An output parameter holding an XML document (Campaign's ``DOMDocument`` / ``DOMElement``)."""
    return f"<{name} xsi:type='ns:Element' SOAP-ENV:encodingStyle='{LITERAL_XML}'>{xml}</{name}>\n"


def push_event_response(service: str, event_id: int) -> bytes:
    """``PushEvent``'s answer: ``plId``, the stored event's id (its high byte is the instance id)."""
    return method_response(f"urn:{service}", "PushEvent", f"<plId xsi:type='xsd:long'>{event_id}</plId>\n")


def push_events_response(service: str, event_ids: Iterable[int]) -> bytes:
    """``PushEvents``' answer: the ids in request order, as ``pdomIds``, a document in Campaign's
    collection form: ``<rtEvent-collection><rtEvent id="..."/>...</rtEvent-collection>`` (``batchEvent``
    for ``nms:batchEvent``)."""
    name = service.partition(":")[2]
    items = "".join(f'<{name} id="{event_id}"/>' for event_id in event_ids)
    collection = f"<{name}-collection>{items}</{name}-collection>"
    return method_response(f"urn:{service}", "PushEvents", _document("pdomIds", collection))


def logon_response(
    method: str,
    session_token: str,
    security_token: str,
    *,
    login: str,
    instance_name: str,
    version: str,
    server_date: str,
    timeout_seconds: int,
) -> bytes:
    """``xtk:session#Logon`` (or ``BearerTokenLogon``): session token, session info, security token.

    The session info describes this server (``serverInfo``) and the caller (``userInfo``), with the
    elements and attributes clients read.
    """
    major, minor, patch = ([*version.split("."), "0", "0"])[:3]
    server = (
        f'<serverInfo buildNumber="{escape(version)}" instanceName="{escape(instance_name)}" '
        f'majNumber="{escape(major)}" minNumber="{escape(minor)}" servicePack="{escape(patch)}" '
        f'serverDate="{server_date}" sessionTimeOut="{timeout_seconds}" '
        f'securityTimeOut="{timeout_seconds}"/>'
    )
    user = f'<userInfo locale="en" login="{escape(login)}" loginCS="{escape(login)}" timezone="UTC"/>'
    content = (
        f"<pstrSessionToken xsi:type='xsd:string'>{escape(session_token)}</pstrSessionToken>\n"
        + _document("pSessionInfo", f"<sessionInfo>{server}{user}</sessionInfo>")
        + f"<pstrSecurityToken xsi:type='xsd:string'>{escape(security_token)}</pstrSecurityToken>\n"
    )
    return method_response("urn:xtk:session", method, content)


def logoff_response() -> bytes:
    return method_response("urn:xtk:session", "Logoff", "")


def entity_response(entity_xml: str | None) -> bytes:
    """``GetEntityIfMoreRecent``'s answer: the entity, or an empty ``pdomDoc`` when there is none."""
    return method_response(PERSIST_NS, "GetEntityIfMoreRecent", _document("pdomDoc", entity_xml or ""))


def schema_entity(service: str) -> str:
    """The compiled schema of ``nms:rtEvent`` or ``nms:batchEvent`` as clients read it to call methods:
    the name, types and directions of each method's parameters (names as Adobe's SDK declares them)."""
    namespace, _, name = service.partition(":")
    return (
        f'<schema namespace="{namespace}" name="{name}">'
        f'<element name="{name}"/>'
        "<methods>"
        '<method name="PushEvent" static="true"><parameters>'
        '<param desc="Event." inout="in" name="event" type="DOMDocument"/>'
        '<param desc="Technical identifier of the inserted event" inout="out" name="id" type="int64"/>'
        "</parameters></method>"
        '<method name="PushEvents" static="true"><parameters>'
        '<param desc="Events." inout="in" name="eventCollection" type="DOMDocument"/>'
        '<param desc="Technical identifiers of the inserted events, in order" inout="out" name="ids"'
        ' type="DOMDocument"/>'
        "</parameters></method>"
        "</methods></schema>"
    )
