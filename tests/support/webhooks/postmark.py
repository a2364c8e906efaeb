"""Postmark's webhook credentials (HTTP basic authentication)."""

from __future__ import annotations

import base64


def basic(login: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode()
