"""Vonage's SMS API request signature (``sig``): one implementation for both directions.

The SMS we send (``messagecenter.delivery.sms_rest``) and the delivery receipts we verify
(``messagecenter.feedback.webhooks.vonage``) use the same documented scheme ("Signing Messages"):
take every parameter but ``sig``, sorted by name; replace ``&`` and ``=`` in the values by ``_``;
build ``&name=value&name=value``; then either append the signature secret and take the MD5 hex
digest (``md5hash``, the default), or take the hex HMAC under the secret with MD5, SHA-1, SHA-256
or SHA-512 (``md5``, ``sha1``, ``sha256``, ``sha512``). The signed parameters include ``timestamp``,
UNIX time in seconds, which both sides check against their clock (replays).

It lives here, outside the webhooks package, so that delivery imports it without the webhooks'
dependencies.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

METHODS = ("md5hash", "md5", "sha1", "sha256", "sha512")
DEFAULT_METHOD = "md5hash"


def compute_signature(secret: str, params: Mapping[str, str], method: str = DEFAULT_METHOD) -> str:
    """Vonage's signature of ``params`` (without ``sig``), lower-case hex."""
    if method not in METHODS:
        raise ValueError(f"signature method must be one of {', '.join(METHODS)}, not {method!r}")
    signed = "".join(f"&{name}={params[name].replace('&', '_').replace('=', '_')}" for name in sorted(params))
    if method == "md5hash":
        return hashlib.md5((signed + secret).encode("utf-8")).hexdigest()
    return hmac.new(secret.encode("utf-8"), signed.encode("utf-8"), method).hexdigest()


def sign(params: Mapping[str, str], secret: str, method: str, *, timestamp: int) -> dict[str, str]:
    """``params`` with ``timestamp`` (UNIX seconds) and the ``sig`` of them all."""
    signed = {**params, "timestamp": str(timestamp)}
    signed["sig"] = compute_signature(secret, signed, method)
    return signed
