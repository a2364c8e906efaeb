"""The WSDL documents of ``schemawsdl.jsp?schema=...``, laid out as Campaign's.

Document/literal, ``elementFormDefault="qualified"`` in ``urn:<service>``; parameters named by
Campaign's convention (a type prefix and the parameter name: ``sessiontoken``, ``domEvent``,
``strLogin``; outputs add ``p``: ``plId``, ``pstrSessionToken``); an XML document parameter is of type
``Element`` (any content); ``soapAction`` is ``service#Method``.
"""

from __future__ import annotations

from messagecenter.intake.soap.responses import SOAP_ENCODING, escape

Param = tuple[str, str]  # (element name, XML Schema type: "s:string", "s:long", "tns:Element")

# service -> (binding name prefix, service element name, {method: (inputs, outputs)})
_SERVICES: dict[str, tuple[str, str, dict[str, tuple[list[Param], list[Param]]]]] = {
    "nms:rtEvent": (
        "rtEvent",
        "NmsRtEvent",
        {
            "PushEvent": ([("domEvent", "tns:Element")], [("plId", "s:long")]),
            "PushEvents": ([("domEventCollection", "tns:Element")], [("pdomIds", "tns:Element")]),
        },
    ),
    "nms:batchEvent": (
        "batchEvent",
        "NmsBatchEvent",
        {
            "PushEvent": ([("domEvent", "tns:Element")], [("plId", "s:long")]),
            "PushEvents": ([("domEventCollection", "tns:Element")], [("pdomIds", "tns:Element")]),
        },
    ),
    "xtk:session": (
        "session",
        "XtkSession",
        {
            "Logon": (
                [("strLogin", "s:string"), ("strPassword", "s:string"), ("elemParameters", "tns:Element")],
                [
                    ("pstrSessionToken", "s:string"),
                    ("pSessionInfo", "tns:Element"),
                    ("pstrSecurityToken", "s:string"),
                ],
            ),
            "Logoff": ([], []),
        },
    ),
}
SCHEMAS = frozenset(_SERVICES)


def _sequence(params: list[Param]) -> str:
    elements = "".join(
        f'<s:element maxOccurs="1" minOccurs="1" name="{name}" type="{kind}"/>' for name, kind in params
    )
    return f"<s:complexType><s:sequence>{elements}</s:sequence></s:complexType>"


def wsdl(service: str, location: str) -> bytes:
    """The WSDL of ``service`` (one of :data:`SCHEMAS`), its port at ``location`` (soaprouter.jsp)."""
    prefix, service_name, methods = _SERVICES[service]
    namespace = f"urn:{service}"
    binding = f"{prefix}MethodsSoap"
    elements, messages, operations, bindings = [], [], [], []
    body = f'<soap:body encodingStyle="{SOAP_ENCODING}" use="literal"/>'
    for method, (inputs, outputs) in methods.items():
        elements.append(
            f'<s:element name="{method}">{_sequence([("sessiontoken", "s:string"), *inputs])}</s:element>'
            f'<s:element name="{method}Response">{_sequence(outputs)}</s:element>'
        )
        messages.append(
            f'<message name="{method}In"><part element="tns:{method}" name="parameters"/></message>'
            f'<message name="{method}Out"><part element="tns:{method}Response" name="parameters"/></message>'
        )
        operations.append(
            f'<operation name="{method}"><input message="tns:{method}In"/>'
            f'<output message="tns:{method}Out"/></operation>'
        )
        bindings.append(
            f'<operation name="{method}"><soap:operation soapAction="{service}#{method}" style="document"/>'
            f"<input>{body}</input><output>{body}</output></operation>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<definitions targetNamespace="{namespace}" xmlns="http://schemas.xmlsoap.org/wsdl/"'
        ' xmlns:s="http://www.w3.org/2001/XMLSchema" xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"'
        f' xmlns:tns="{namespace}" xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/">'
        f'<types><s:schema elementFormDefault="qualified" targetNamespace="{namespace}">'
        '<s:complexType name="Element"><s:sequence><s:any processContents="lax"/></s:sequence>'
        f"</s:complexType>{''.join(elements)}</s:schema></types>"
        f"{''.join(messages)}"
        f'<portType name="{binding}">{"".join(operations)}</portType>'
        f'<binding name="{binding}" type="tns:{binding}">'
        '<soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>'
        f"{''.join(bindings)}</binding>"
        f'<service name="{service_name}"><port binding="tns:{binding}" name="{binding}">'
        f'<soap:address location="{escape(location)}"/></port></service>'
        "</definitions>\n"
    ).encode()
