from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from messagecenter.api import create_app
from messagecenter.core.settings import IntakeSettings, Settings
from tests.support.builders import API_TOKEN


@pytest.fixture
def client(db_dsn: str) -> Iterator[TestClient]:
    app = create_app(
        Settings(api_tokens=(API_TOKEN, "test-token-2"), instance_id=5, intake=IntakeSettings(max_batch=100)),
        dsn=db_dsn,
    )
    with TestClient(app, headers={"Authorization": f"Bearer {API_TOKEN}"}) as test_client:
        yield test_client
