"""The notification route that Orthanc's hook calls: refused with a reason when no PACS is
configured, when the UID is not one, or when the caller's role may not send studies."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from service.main import create_app
from tests.support.service import auth
from workers.config import Settings

pytestmark = pytest.mark.integration


def test_a_notification_needs_a_pacs_a_study_uid_and_the_right_role(
    base_settings: Settings, keys: dict[str, str]
) -> None:
    uid = {"study_instance_uid": "1.2.826.0.1.3680043.8.498.1"}
    with TestClient(create_app(base_settings)) as client:
        unset = client.post("/v1/pacs/notify", json=uid, headers=auth(keys["uploader"]))
        assert unset.status_code == 409 and "ECHOCXR_PACS_DICOMWEB_URL" in unset.json()["detail"]
    configured = base_settings.model_copy(update={"pacs_dicomweb_url": "http://127.0.0.1:9/x"})
    with TestClient(create_app(configured)) as client:
        bad = {"study_instance_uid": "1.2.x; DROP"}
        assert (
            client.post("/v1/pacs/notify", json=bad, headers=auth(keys["admin"])).status_code == 422
        )
        refused = client.post("/v1/pacs/notify", json=uid, headers=auth(keys["radiologist"]))
        assert refused.status_code == 403
        accepted = client.post("/v1/pacs/notify", json=uid, headers=auth(keys["uploader"]))
        assert accepted.status_code == 202 and accepted.json()["state"] == "queued"
