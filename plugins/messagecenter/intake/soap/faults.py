"""SOAP faults with Campaign's texts, and how they are written.

A fault is ``SOAP-ENV:Fault > faultcode, faultstring, detail`` with the literal ``SOAP-ENV`` prefix
(clients look the elements up by that qualified name), and is answered with HTTP 200 like Campaign's:
clients (Adobe's JavaScript SDK, .NET clients) read a fault only from a 2xx answer and report
anything else as a transport error. Campaign prefixes most fault strings with an error code such as
``SOP-330011``, which clients extract with ``/(\\w{3}-\\d{6})(.*)/``.
"""

from __future__ import annotations

import re
from typing import Literal

from messagecenter.intake.soap.responses import PROLOG, SOAP_ENV, XSD, XSI, escape

# Characters XML 1.0 cannot carry, even escaped: dropped from messages that may quote input.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class SoapFault(Exception):
    """A call refused with a SOAP fault.

    :param string: ``faultstring``, Campaign's sentence (with its error code where Campaign has one).
    :param detail: ``detail``: what exactly was wrong (``None``: no ``detail`` element).
    :param code: ``Client`` (the request is at fault) or ``Server``.
    :param cdata: write ``detail`` as a CDATA section, as Campaign does for XML parse errors.
    """

    def __init__(
        self,
        string: str,
        detail: str | None = None,
        *,
        code: Literal["Client", "Server"] = "Client",
        cdata: bool = False,
    ) -> None:
        super().__init__(string if detail is None else f"{string} {detail}")
        self.string, self.detail, self.code, self.cdata = string, detail, code, cdata

    def to_xml(self) -> bytes:
        """The whole answer: prolog and envelope."""
        detail = ""
        if self.detail is not None:
            text = _NOT_XML.sub("", self.detail)
            if self.cdata:
                text = "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"
            else:
                text = escape(text)
            detail = f"<detail xsi:type='xsd:string'>{text}</detail>\n"
        return (
            f"{PROLOG}<SOAP-ENV:Envelope xmlns:xsd='{XSD}' xmlns:xsi='{XSI}' xmlns:SOAP-ENV='{SOAP_ENV}'>\n"
            "<SOAP-ENV:Body>\n<SOAP-ENV:Fault>\n"
            f"<faultcode>SOAP-ENV:{self.code}</faultcode>\n"
            f"<faultstring xsi:type='xsd:string'>{escape(_NOT_XML.sub('', self.string))}</faultstring>\n"
            f"{detail}</SOAP-ENV:Fault>\n</SOAP-ENV:Body>\n</SOAP-ENV:Envelope>\n"
        ).encode()


def invalid_message(service: str, method: str, detail: str) -> SoapFault:
    """The request is not a SOAP message we can read (not XML, a DTD, too deep, too large...)."""
    # Campaign's sentence names the method as the service and the reverse; kept as clients see it.
    string = "The XML SOAP message is invalid"
    string += f" (service '{method}', method '{service}')." if service and method else "."
    return SoapFault(string, detail, cdata=True)


def invalid_login(service: str, method: str) -> SoapFault:
    """No credential of the request is valid (Campaign's text, no error code)."""
    string = f"Error while reading parameters of method '{method}' of service '{service}'."
    return SoapFault(string, "Invalid login or password. Connection denied.")


def parameter_error(service: str, method: str, detail: str) -> SoapFault:
    """A parameter is missing or is not what the method takes."""
    return SoapFault(f"Error while reading parameters of method '{method}' of service '{service}'.", detail)


def method_error(
    service: str, method: str, detail: str, *, code: Literal["Client", "Server"] = "Client"
) -> SoapFault:
    """The method ran and refused (an invalid event, an idempotency conflict) or failed (``Server``)."""
    string = f"SOP-330011 Error while executing the method '{method}' of service '{service}'."
    return SoapFault(string, detail, code=code)


def unknown_method(service: str, method: str) -> SoapFault:
    """A method (or service) this server does not implement."""
    return SoapFault(f"SOP-330006 The method '{method}' is not defined in SOAP service '{service}'.")
