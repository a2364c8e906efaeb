"""Reading a SOAP request: safely, and as leniently as real Campaign clients need.

Safety (the body is parsed before the credentials it carries can be checked):

* lxml (libxml2) with entity substitution off, no network access, no DTD loading and no "huge tree":
  external entities are never fetched, internal ones never expanded (no "billion laughs"), libxml2
  refuses a document nested more than 256 levels deep and a single text node over 10 MB;
* a document type declaration (``<!DOCTYPE``) is refused outright;
* the body's size is bounded before it is parsed (by the API, ``MC_SOAP_MAX_BODY_BYTES``).

Leniency (what clients in the wild send, all of it accepted):

* the method comes from the ``SOAPAction`` header (quoted or not; the header name in any case),
  else from the ``soapAction`` query parameter, and when neither names a method this server has,
  from the first child of the SOAP Body (its local name, and its namespace ``urn:<service>``);
* elements are matched by local name whatever their namespace (prefixed, default namespace,
  ``xmlns=""``), and parameters are bound by position: the first child of the method element is the
  session token, the second the XML document (``domEvent``, ``domDoc``, ``event``... any name);
* the charset comes from the ``Content-Type`` header, else from the XML declaration (or a byte order
  mark), else UTF-8.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

from lxml import etree

from messagecenter.intake.soap.faults import invalid_message, unknown_method

# The methods this server implements, per service (as ``SOAPAction`` names them: ``service#method``).
SERVICES: dict[str, frozenset[str]] = {
    "nms:rtEvent": frozenset({"PushEvent", "PushEvents"}),
    "nms:batchEvent": frozenset({"PushEvent", "PushEvents"}),
    "xtk:session": frozenset({"Logon", "BearerTokenLogon", "Logoff", "GetEntityIfMoreRecent"}),
    "xtk:persist": frozenset({"GetEntityIfMoreRecent"}),
}

_PARSER_OPTIONS: dict[str, Any] = {
    "resolve_entities": False,
    "no_network": True,
    "load_dtd": False,
    "dtd_validation": False,
    "huge_tree": False,
    "remove_comments": True,
    "remove_pis": True,
    "collect_ids": False,
}
_parsers = threading.local()  # lxml parsers are not shared between threads
_names: dict[str, str] = {}
_POSITION = re.compile(r"(?:, line \d+)+, column \d+\Z")


def local_name(tag: str) -> str:
    """``"{urn:nms:rtEvent}PushEvent"`` -> ``"PushEvent"`` (cached: tags repeat a lot)."""
    name = _names.get(tag)
    if name is None:
        name = tag.rpartition("}")[2]
        if len(_names) < 10_000:
            _names[tag] = name
    return name


@dataclass(frozen=True)
class SoapCall:
    """A parsed request.

    :param service: e.g. ``"nms:rtEvent"``.
    :param method: e.g. ``"PushEvent"``.
    :param params: the element children of the method element, in order (lxml elements).
    :param header_tokens: session tokens found in the SOAP Header (``<Cookie>__sessiontoken=...``).
    """

    service: str
    method: str
    params: tuple[Any, ...]
    header_tokens: tuple[str, ...] = ()

    def text(self, position: int) -> str:
        """The text of parameter ``position`` (0 is the session token); ``""`` if there is none."""
        if position >= len(self.params):
            return ""
        return self.params[position].text or ""


def parse_action(value: str | None) -> tuple[str, str] | None:
    """``(service, method)`` of a ``SOAPAction`` value: ``"nms:rtEvent#PushEvent"``, quoted or not.

    ``xtk:persist|xtk:session#Method`` (an interface method called on a schema) names the interface.
    """
    if not value:
        return None
    value = value.strip().strip("\"'").strip()
    urn, sep, method = value.rpartition("#")
    if not sep or not urn or not method:
        return None
    return urn.removeprefix("urn:").partition("|")[0], method


def _parser(encoding: str | None) -> Any:
    """This thread's parser: following the document's encoding (``None``), or reading UTF-8."""
    cache: dict[str | None, Any] | None = getattr(_parsers, "cache", None)
    if cache is None:
        cache = _parsers.cache = {}
    parser = cache.get(encoding)
    if parser is None:
        parser = cache[encoding] = etree.XMLParser(encoding=encoding, **_PARSER_OPTIONS)
    return parser


def parse_xml(body: bytes, charset: str | None, where: tuple[str, str]) -> Any:
    """The root element of ``body``, or a fault naming what is wrong (``where``: service, method).

    ``charset`` (the ``Content-Type`` header's) wins over the XML declaration: the body is decoded
    with it (Python's codecs) and parsed as the UTF-8 it is then.
    """
    encoding = None
    if charset is not None:
        encoding = "utf-8"
        if charset.strip().lower().replace("_", "-") not in ("utf-8", "utf8"):
            try:
                body = body.decode(charset).encode()
            except LookupError:
                raise invalid_message(*where, f"unknown charset {charset!r}") from None
            except UnicodeDecodeError as exc:
                raise invalid_message(*where, f"the body is not {charset}: {exc}") from None
    try:
        root = etree.fromstring(body, _parser(encoding))
    except etree.XMLSyntaxError as exc:
        line, column = exc.position
        message = _POSITION.sub("", exc.msg)  # libxml2 repeats the position at the end
        raise invalid_message(*where, f"({line}:{column}) : {message}") from None
    except ValueError as exc:  # not expected once the XML is well-formed: still a fault
        raise invalid_message(*where, str(exc) or type(exc).__name__) from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise invalid_message(*where, "a document type declaration (DOCTYPE) is not allowed")
    return root


def _elements(parent: Any) -> list[Any]:
    return [child for child in parent if isinstance(child.tag, str)]


def _session_cookies(header: Any) -> list[str]:
    """Session tokens sent as ``<Cookie>__sessiontoken=...</Cookie>`` in the SOAP Header."""
    tokens = []
    for child in _elements(header):
        if local_name(child.tag).lower() != "cookie":
            continue
        for part in (child.text or "").split(";"):
            name, sep, value = part.strip().partition("=")
            if sep and name == "__sessiontoken" and value:
                tokens.append(value)
    return tokens


def _resolve(action: tuple[str, str] | None, method_element: Any) -> tuple[str, str]:
    if action is not None and action[1] in SERVICES.get(action[0], ()):
        return action
    namespace = etree.QName(method_element).namespace or ""
    service = namespace.removeprefix("urn:") if namespace.startswith("urn:") else ""
    if not service and action is not None:
        service = action[0]
    method = local_name(method_element.tag)
    if method in SERVICES.get(service, ()):
        return service, method
    raise unknown_method(*(action or (service, method)))


def parse_call(body: bytes, *, charset: str | None = None, soap_action: str | None = None) -> SoapCall:
    """Parse a request to ``soaprouter.jsp``: which method of which service, with which parameters.

    :param charset: the ``Content-Type`` header's charset, if it has one.
    :param soap_action: the ``SOAPAction`` header, else the ``soapAction`` query parameter.
    :raises SoapFault: not a SOAP message (or not a safe one), or a method this server does not have.
    """
    action = parse_action(soap_action)
    where = action or ("", "")
    root = parse_xml(body, charset, where)
    if local_name(root.tag) != "Envelope":
        raise invalid_message(*where, f"the root element is '{local_name(root.tag)}', not a SOAP Envelope")
    header = envelope_body = None
    for child in _elements(root):
        name = local_name(child.tag)
        if name == "Header" and header is None:
            header = child
        elif name == "Body" and envelope_body is None:
            envelope_body = child
    if envelope_body is None:
        raise invalid_message(*where, "the SOAP Envelope has no Body")
    methods = _elements(envelope_body)
    if not methods:
        raise invalid_message(*where, "the SOAP Body is empty")
    service, method = _resolve(action, methods[0])
    return SoapCall(
        service=service,
        method=method,
        params=tuple(_elements(methods[0])),
        header_tokens=tuple(_session_cookies(header)) if header is not None else (),
    )
