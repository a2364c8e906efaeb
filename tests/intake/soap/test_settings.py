"""The SOAP settings: events per PushEvents call (default: the REST batch limit) and body size."""

from __future__ import annotations

import pytest

from messagecenter.core.errors import ConfigError
from messagecenter.core.settings import IntakeSettings, load_settings


def test_soap_events_follow_the_batch_limit_unless_set() -> None:
    assert load_settings({}).intake.soap_events_limit == IntakeSettings.max_batch
    assert load_settings({"MC_MAX_BATCH": "100"}).intake.soap_events_limit == 100
    assert load_settings({"MC_MAX_BATCH": "100", "MC_SOAP_MAX_EVENTS": "5"}).intake.soap_events_limit == 5
    assert IntakeSettings(max_batch=7).soap_events_limit == 7
    assert IntakeSettings(max_batch=7, soap_max_events=9).soap_events_limit == 9


def test_soap_body_limit() -> None:
    assert load_settings({}).intake.soap_max_body_bytes == 16 * 1024 * 1024
    assert load_settings({"MC_SOAP_MAX_BODY_BYTES": "4096"}).intake.soap_max_body_bytes == 4096


@pytest.mark.parametrize(
    "env",
    [{"MC_SOAP_MAX_EVENTS": "0"}, {"MC_SOAP_MAX_EVENTS": "many"}, {"MC_SOAP_MAX_BODY_BYTES": "10"}],
)
def test_bad_soap_settings_fail_early(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=next(iter(env))):
        load_settings(env)
