"""Driving Debian's Chromium in the browser tests of the Airflow UI (selenium, headless)."""

from __future__ import annotations

from typing import Any

CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT = 60  # seconds a page or a DAG may take to show up in a real Airflow


def wait_for(driver: Any, predicate: Any, what: str, timeout: float = WAIT) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.3).until(predicate, message=what)
