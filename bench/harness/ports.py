"""Local ports: a free one for a server a benchmark starts, and waiting until that server answers."""

from __future__ import annotations

import time

import httpx
from devstack.sinks import free_port

__all__ = ["free_port", "wait_http"]


def wait_http(url: str, headers: dict[str, str] | None = None, timeout: float = 60) -> None:
    """Return once ``GET url`` answers 200 (a server just started); raise after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, headers=headers, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} never answered")
