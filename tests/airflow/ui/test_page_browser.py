"""The Message Center page in a real browser, inside a real Airflow (API server + DAG processor of
the demo's stack), with real users: an admin and a viewer (not all-admins).

Needs Debian's ``chromium`` and ``chromium-driver`` (``apt-get install -y chromium chromium-driver``).
A screenshot of each user's page is saved in the test's temporary directory (printed).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from devstack.stack import AirflowConfig, Stack, postgres_connection

from messagecenter.execution.heartbeat import TECHNICAL_WORKFLOWS, record_heartbeat
from tests.support.browser import CHROMEDRIVER, WAIT, wait_for
from tests.support.builders import UNQUALIFIED, create_database, drop_database, seed, seed_feedback
from tests.support.sinks import free_port

pytestmark = [
    pytest.mark.airflow,
    pytest.mark.skipif(
        not (Path(CHROMEDRIVER).exists() and shutil.which("chromium")),
        reason="needs `apt-get install -y chromium chromium-driver`",
    ),
]


@dataclass
class Ui:
    stack: Stack
    mc_dsn: str
    base: str
    out: Path


@pytest.fixture(scope="module")
def ui(pg_admin_dsn: str, template_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ui]:
    out = tmp_path_factory.mktemp("ui")
    names = (f"mc_ui_{os.getpid()}", f"mc_ui_meta_{os.getpid()}")
    mc_dsn = create_database(pg_admin_dsn, names[0], template=template_db)
    meta_dsn = create_database(pg_admin_dsn, names[1])
    with psycopg.connect(mc_dsn, autocommit=True) as conn:
        seed(conn)
        seed_feedback(conn)
        for workflow in TECHNICAL_WORKFLOWS:
            record_heartbeat(conn, workflow, 1, 0.1)
    mc_conn = json.dumps(postgres_connection(mc_dsn))
    config = AirflowConfig(
        home=out / "airflow",
        metadata_dsn=meta_dsn,
        port=free_port(),
        admin_password="admin-pw",
        viewer_password="viewer-pw",
        extra={
            "AIRFLOW_CONN_MC_EXECUTION": mc_conn,
            "AIRFLOW_CONN_MC_CONTROL": mc_conn,
            "MC_API_TOKENS": "intake-token",
            "MC_REGISTRY_POLL_SECONDS": "3600",  # only the button registers the instance here
            "MC_REGISTRY_CACHE": str(out / "registry.json"),
        },
    )
    config.write_passwords_file()
    try:
        with Stack(config, out / "logs") as stack:
            stack.migrate()
            stack.start("api-server", "api-server", "--port", str(config.port), "--host", "127.0.0.1")
            stack.wait_api()
            stack.start("dag-processor", "dag-processor")
            # A connection written straight to the metadata DB (like `airflow connections add`), not yet
            # mirrored: its archiving DAG is missing until someone presses the button.
            paris = postgres_connection(mc_dsn, instance_id=1)
            stack.run("connections", "add", "mc_exec_paris", "--conn-json", json.dumps(paris))
            stack.wait_for_dags(["rtEventsProcessing"])
            yield Ui(stack, mc_dsn, config.base_url, out)
    finally:
        drop_database(pg_admin_dsn, names[0])
        drop_database(pg_admin_dsn, names[1])


def open_page(driver: Any, ui: Ui, user: str, password: str) -> None:
    """Log in through Airflow's real form, open the page from the UI, and switch into its frame."""
    from selenium.webdriver.common.by import By

    driver.get(f"{ui.base}/plugin/messagecenter")
    username = wait_for(
        driver, lambda d: d.find_element(By.CSS_SELECTOR, "input[name=username]"), "login form"
    )
    username.send_keys(user)
    driver.find_element(By.CSS_SELECTOR, "input[name=password]").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for(driver, lambda d: "/plugin/messagecenter" in d.current_url, "back on the page after login")
    frame = wait_for(
        driver,
        lambda d: d.find_element(By.CSS_SELECTOR, "iframe[src*='messagecenter/ui']"),
        "the page's frame",
    )
    driver.switch_to.frame(frame)
    wait_for(driver, lambda d: d.find_element(By.CSS_SELECTOR, "body[data-loaded=true]"), "the data loaded")


def cell(driver: Any, selector: str) -> Any:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, selector)


def db_value(ui: Ui, statement: str) -> Any:
    with psycopg.connect(ui.mc_dsn) as conn:
        return conn.execute(statement).fetchone()[0]  # type: ignore[index]


def test_viewer_sees_the_page_but_cannot_create_the_archiving_workflow(ui: Ui, browser: Any) -> None:
    open_page(browser, ui, "viewer", "viewer-pw")
    pending = db_value(ui, "SELECT count(*) FROM mc.rt_event WHERE status IN (0, 1)")
    assert cell(browser, "[data-instance=paris] td[data-metric='rt.pending']").get_attribute(
        "data-value"
    ) == str(pending)
    button = cell(browser, "button.create-archiving[data-instance=paris]")
    assert not button.is_enabled()
    # Even forged from the page, the write is refused for a viewer.
    status = browser.execute_async_script(
        "const done = arguments[0];"
        "fetch('api/archiving/paris', {method: 'POST', headers: {'Content-Type': 'application/json'},"
        " body: JSON.stringify({instance: 'paris'})}).then(r => done(r.status));"
    )
    assert status == 403
    browser.switch_to.default_content()
    browser.save_screenshot(str(ui.out / "message-center-viewer.png"))
    print(f"screenshot: {ui.out / 'message-center-viewer.png'}")  # noqa: T201
    assert ui.stack.rest("GET", "/dags/mcArchiving_paris").status_code == 404


def test_admin_reads_the_numbers_of_the_database_and_creates_the_archiving_workflow(
    ui: Ui, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    open_page(browser, ui, "admin", "admin-pw")
    section = "[data-instance=paris]"
    assert cell(browser, f"{section} td[data-metric='rt.pending']").get_attribute("data-value") == str(
        db_value(ui, "SELECT count(*) FROM mc.rt_event WHERE status IN (0, 1)")
    )
    failed = db_value(ui, "SELECT count(*) FROM mc.rt_event WHERE status = 4")
    final = db_value(ui, "SELECT count(*) FROM mc.rt_event WHERE status IN (2, 3, 4)")
    rate = cell(browser, f"{section} td[data-metric='rt.error_rate_percent']")
    assert float(rate.get_attribute("data-value")) == round(100 * failed / final, 2)
    assert "level-warning" in rate.get_attribute("class")  # 4 %: between Campaign's 1 % and 5 %
    sent = db_value(
        ui, "SELECT count(*) FROM mc.rt_event WHERE status = 2 AND created > now() - interval '1 hour'"
    )
    assert cell(browser, f"{section} td[data-status='rt.hour.Sent']").text == str(sent)
    # The throughput plot is drawn: a canvas with something on it, and a legend per final status.
    canvas = cell(browser, "#plot-paris canvas")
    assert canvas.size["width"] > 300
    assert len(browser.find_elements(By.CSS_SELECTOR, "#plot-paris .u-legend .u-series")) == 6
    assert browser.execute_script(
        "const c = arguments[0]; const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "for (let i = 3; i < d.length; i += 4) if (d[i] > 0) return true; return false;",
        canvas,
    )
    assert len(browser.find_elements(By.CSS_SELECTOR, f"{section} table.heartbeats tr.level-ok")) == 3
    # Delivery feedback: rates in their alert colours, the 0.3 % line named, quarantine, unqualified texts.
    complaints = cell(browser, f"{section} td[data-metric='feedback.complaint_rate_percent']")
    assert float(complaints.get_attribute("data-value")) == 0.5  # 1 of 200: past the 0.3 % line
    assert "level-alert" in complaints.get_attribute("class")
    bounces = cell(browser, f"{section} td[data-metric='feedback.bounce_rate_percent']")
    assert (float(bounces.get_attribute("data-value")), bounces.text) == (3.0, "3 % (6)")
    assert "level-warning" in bounces.get_attribute("class")
    line = cell(browser, f"{section} .complaint-line").text
    assert "Gmail and Yahoo require bulk senders to stay under 0.3 %" in line
    quarantine = f"{section} table.quarantine"
    assert (
        cell(browser, f"{quarantine} tr[data-reason='User unknown'] td[data-status=quarantine]").text == "5"
    )
    assert cell(browser, f"{quarantine} td[data-total=denylisted]").text == "2"
    [text] = browser.find_elements(By.CSS_SELECTOR, f"{section} ol.unqualified li")
    assert (text.find_element(By.CSS_SELECTOR, "code").text, text.get_attribute("title")) == (
        UNQUALIFIED,
        UNQUALIFIED,
    )
    assert browser.find_elements(By.CSS_SELECTOR, "#doctor tbody tr")

    button = cell(browser, "button.create-archiving[data-instance=paris]")
    assert button.is_enabled()
    button.click()
    wait_for(browser, lambda d: "created" in d.find_element(By.ID, "message").text, "the button's answer")
    assert "mcArchiving_paris" in cell(browser, "#message").text
    browser.switch_to.default_content()
    browser.save_screenshot(str(ui.out / "message-center-admin.png"))
    print(f"screenshot: {ui.out / 'message-center-admin.png'}")  # noqa: T201

    ui.stack.wait_for_dags(["mcArchiving_paris"], timeout=WAIT)
    browser.get(f"{ui.base}/dags")
    wait_for(browser, lambda d: "mcArchiving_paris" in d.page_source, "the new DAG in the DAG list")
