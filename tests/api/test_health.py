from __future__ import annotations

from fastapi.testclient import TestClient

from messagecenter.api import create_app
from messagecenter.core.settings import Settings


def test_health_reports_pending_counts_per_queue(client: TestClient) -> None:
    client.post("/api/v1/events/rt", json={"type": "OTP", "channel": "sms", "mobile_phone": "+3361234567"})
    client.post("/api/v1/events/batch", json={"events": [{"type": "NEWS"}] * 3})
    body = client.get("/api/v1/health").json()
    assert body["status"] == "ok"
    assert body["pending"] == {"rt": 1, "batch": 3}
    assert body["instance_id"] == 5
    assert body["schema_version"] >= 1


def test_unreachable_database_is_503_not_a_crash() -> None:
    app = create_app(
        Settings(api_tokens=("t",)), dsn="host=127.0.0.1 port=1 user=x dbname=x connect_timeout=1"
    )
    app.state.mc.pool.timeout = 1  # fail fast
    with TestClient(app, headers={"Authorization": "Bearer t"}) as client:
        response = client.get("/api/v1/health")
    assert response.status_code == 503
    assert response.json()["detail"] == "execution database unavailable"
