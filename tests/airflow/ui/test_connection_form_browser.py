"""Airflow's own "Add connection" form, in a real browser, in a real Airflow (API server and DAG
processor): registering an execution instance with the "Message Center execution instance" type, its
labelled fields, and the archiving workflow that appears once it is saved; adding an SMSC with the
"Message Center SMPP" type, whose Test button binds to a real SMSC (smpp34's server).

Needs the package installed (``pip install -e .``, which ``make test`` runs: Airflow finds the
connection types through its entry point) and Debian's ``chromium`` and ``chromium-driver``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from devstack.smsc import running_smsc
from devstack.stack import AirflowConfig, Stack, postgres_connection
from psycopg.conninfo import conninfo_to_dict

from messagecenter.airflow.connection_types import EXECUTION_CONN_TYPE, plain_extra
from tests.support.browser import CHROMEDRIVER, WAIT, wait_for
from tests.support.builders import create_database, drop_database, needs_install
from tests.support.sinks import free_port

pytestmark = [
    pytest.mark.airflow,
    needs_install,
    pytest.mark.skipif(
        not (Path(CHROMEDRIVER).exists() and shutil.which("chromium")),
        reason="needs `apt-get install -y chromium chromium-driver`",
    ),
]


@dataclass
class Airflow:
    stack: Stack
    mc_dsn: str
    out: Path


@pytest.fixture(scope="module")
def airflow(
    pg_admin_dsn: str, template_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Airflow]:
    out = tmp_path_factory.mktemp("connection-form")
    names = (f"mc_form_{os.getpid()}", f"mc_form_meta_{os.getpid()}")
    mc_dsn = create_database(pg_admin_dsn, names[0], template=template_db)
    meta_dsn = create_database(pg_admin_dsn, names[1])
    mc_conn = json.dumps(postgres_connection(mc_dsn))
    config = AirflowConfig(
        home=out / "airflow",
        metadata_dsn=meta_dsn,
        port=free_port(),
        admin_password="admin-pw",
        extra={
            "AIRFLOW_CONN_MC_EXECUTION": mc_conn,
            "AIRFLOW_CONN_MC_CONTROL": mc_conn,
            "MC_API_TOKENS": "intake-token",
            # No poll: only the sync that follows the form's write can register the instance.
            "MC_REGISTRY_POLL_SECONDS": "3600",
            "MC_REGISTRY_CACHE": str(out / "registry.json"),
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",  # the form's Test button
        },
    )
    config.write_passwords_file()
    try:
        with Stack(config, out / "logs") as stack:
            stack.migrate()
            stack.start("api-server", "api-server", "--port", str(config.port), "--host", "127.0.0.1")
            stack.wait_api()
            stack.start("dag-processor", "dag-processor")
            stack.wait_for_dags(["rtEventsProcessing"])
            yield Airflow(stack, mc_dsn, out)
    finally:
        drop_database(pg_admin_dsn, names[0])
        drop_database(pg_admin_dsn, names[1])


def test_an_execution_instance_added_with_the_form_gets_its_archiving_workflow(
    airflow: Airflow, browser: Any
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    base = airflow.stack.config.base_url
    # Admin -> Connections -> Add: our type, among Airflow's own.
    _open_add_form(browser, base, "mc_exec_lyon", "Message Center execution")
    database = wait_for(
        browser, lambda d: d.find_element(By.CSS_SELECTOR, "input[name=schema]"), "standard fields"
    )
    # Postgres' fields, the schema labelled as what it is.
    label = browser.find_element(By.CSS_SELECTOR, f"label[for='{database.get_attribute('id')}']")
    assert label.text.strip() == "Database"
    mc = conninfo_to_dict(airflow.mc_dsn)
    for name, value in {"host": mc["host"], "port": mc["port"], "login": mc["user"]}.items():
        browser.find_element(By.CSS_SELECTOR, f"input[name={name}]").send_keys(str(value))
    database.send_keys(str(mc["dbname"]))

    # The labelled "Instance id" field instead of raw extra JSON.
    browser.find_element(
        By.XPATH, "//button[@data-part='item-trigger'][contains(., 'Extra Fields')][not(contains(., 'JSON'))]"
    ).click()
    instance_id = _extra_field(browser, "instance_id")
    row = instance_id.find_element(By.XPATH, "ancestor::*[.//label][1]")
    assert "Instance id" in row.text
    instance_id.send_keys("4")
    instance_id.send_keys(Keys.TAB)
    browser.save_screenshot(str(airflow.out / "add-execution-instance.png"))
    print(f"screenshot: {airflow.out / 'add-execution-instance.png'}")  # noqa: T201
    save = browser.find_element(By.XPATH, "//button[contains(., 'Save')]")
    wait_for(browser, lambda d: save.is_enabled(), "Save enabled once the instance id is set")
    save.click()
    wait_for(browser, lambda d: not d.find_elements(By.NAME, "connection_id"), "the form closed")

    saved = airflow.stack.rest("GET", "/connections/mc_exec_lyon").json()
    assert saved["conn_type"] == EXECUTION_CONN_TYPE
    assert (saved["host"], saved["schema"]) == (mc["host"], mc["dbname"])
    # What the form saves: each field under its own name, as JSON numbers, empty ones as null.
    assert plain_extra(json.loads(saved["extra"]), EXECUTION_CONN_TYPE) == {"instance_id": 4}

    # Registered at once (the poll is off), and its archiving DAG parsed.
    variable = airflow.stack.rest("GET", "/variables/mc_archiving__lyon")
    assert variable.status_code == 200, variable.text
    assert variable.json()["value"] == "mc_exec_lyon"
    airflow.stack.wait_for_dags(["mcArchiving_lyon"], timeout=WAIT)
    browser.get(f"{base}/dags")
    wait_for(browser, lambda d: "mcArchiving_lyon" in d.page_source, "the new DAG in the DAG list")


def test_an_smsc_added_with_the_form_passes_its_test_button(airflow: Airflow, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    with running_smsc(accounts={"shop": "smsc-pw"}) as smsc:
        _open_add_form(browser, airflow.stack.config.base_url, "mc_sms", "Message Center SMPP")
        login = wait_for(
            browser, lambda d: d.find_element(By.CSS_SELECTOR, "input[name=login]"), "SMPP fields"
        )
        label = browser.find_element(By.CSS_SELECTOR, f"label[for='{login.get_attribute('id')}']")
        assert label.text.strip() == "System id"
        assert not browser.find_elements(By.CSS_SELECTOR, "input[name=schema]")  # hidden: SMPP has none
        for name, value in {
            "host": "127.0.0.1",
            "port": smsc.port,
            "login": "shop",
            "password": "smsc-pw",
        }.items():
            browser.find_element(By.CSS_SELECTOR, f"input[name={name}]").send_keys(str(value))
        browser.find_element(
            By.XPATH,
            "//button[@data-part='item-trigger'][contains(., 'Extra Fields')][not(contains(., 'JSON'))]",
        ).click()
        _extra_field(browser, "source_addr").send_keys("SHOP")
        _extra_field(browser, "window").send_keys("5")

        browser.save_screenshot(str(airflow.out / "add-smsc.png"))
        browser.find_element(By.XPATH, "//button[contains(., 'Save')]").click()
        wait_for(browser, lambda d: not d.find_elements(By.NAME, "connection_id"), "the form closed")

        # Test, in the list: the API server binds to the SMSC with what the form saved, then unbinds.
        test = "//tr[contains(., 'mc_sms')]//button[contains(@aria-label, 'Test') or contains(., 'Test')]"
        wait_for(browser, lambda d: d.find_element(By.XPATH, test), "the row's Test button").click()
        answered = ("Test Connection Successful", "Test Connection Failed")
        wait_for(browser, lambda d: any(text in d.page_source for text in answered), "the Test's answer")
        browser.save_screenshot(str(airflow.out / "test-smsc.png"))
        assert answered[0] in browser.page_source, airflow.out / "test-smsc.png"
        assert "then unbound; nothing submitted" in browser.page_source  # the hook's own answer
        assert smsc.binds_refused == []
        assert smsc.submits == []

        # The wrong password, through the same Test endpoint the button calls: refused by the SMSC.
        saved = airflow.stack.rest("GET", "/connections/mc_sms").json()
        assert (saved["conn_type"], saved["login"], saved["port"]) == ("smpp", "shop", smsc.port)
        assert plain_extra(json.loads(saved["extra"]), "smpp") == {"source_addr": "SHOP", "window": 5}
        wrong = {**saved, "password": "not-it"}
        answer = airflow.stack.rest("POST", "/connections/test", json=wrong).json()
        assert answer["status"] is False
        assert smsc.binds_refused == ["shop"]


def _open_add_form(browser: Any, base: str, conn_id: str, conn_type: str) -> None:
    """Log in, open Admin -> Connections -> Add, name the connection and choose its type."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    browser.get(f"{base}/connections")
    wait_for(
        browser, lambda d: d.find_element(By.CSS_SELECTOR, "input[name=username]"), "login form"
    ).send_keys("admin")
    browser.find_element(By.CSS_SELECTOR, "input[name=password]").send_keys("admin-pw")
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    add = "//button[contains(., 'Add Connection')]"
    wait_for(browser, lambda d: d.find_element(By.XPATH, add), "the connection list").click()
    wait_for(
        browser, lambda d: d.find_element(By.CSS_SELECTOR, "input[name=connection_id]"), "the form"
    ).send_keys(conn_id)
    kind = browser.find_element(By.CSS_SELECTOR, "input[role=combobox]")
    kind.send_keys(conn_type)
    kind.send_keys(Keys.ENTER)


def _extra_field(browser: Any, name: str) -> Any:
    """The labelled extra field ``name`` of the form (its section opened)."""
    from selenium.webdriver.common.by import By

    return wait_for(
        browser,
        lambda d: next((e for e in d.find_elements(By.NAME, f"element_{name}") if e.is_displayed()), None),
        f"the {name} field",
    )
