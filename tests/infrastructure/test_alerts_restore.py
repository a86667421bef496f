"""A restore makes the alerts table again from the log (R3.6, R4.2), acknowledgements
included, and queues no webhook delivery: what went out before the backup does not go
out a second time from the restored store."""

from __future__ import annotations

import pytest

from application.context import RequestContext, acting_as
from domain.alerts import Alert
from infrastructure.backup.create import create_backup
from infrastructure.backup.restore import restore_backup
from infrastructure.backup.targets import LocalTarget
from tests.application.conftest import OPERATOR, make_components
from tests.infrastructure.test_backup import _restored_app
from tests.infrastructure.webhook_receiver import SECRET


@pytest.fixture
def live(tmp_path, database_url, monkeypatch):
    monkeypatch.setenv("STRONGROOM_WEBHOOK_SECRET", SECRET)
    built = make_components(tmp_path, database_url, webhook_urls=["https://hooks.example.org/strongroom"])
    with acting_as(OPERATOR):
        yield built
    built.close()


def test_a_restore_brings_the_alerts_back_and_sends_none_again(live, tmp_path):
    alert = Alert.raise_alert(rule_id="privilege_grant", key="1", severity="medium", summary="role granted",
                              actor_id="staff-admin", client_addr="192.0.2.1")
    with acting_as(RequestContext(actor_id="monitor", via="worker")):
        live.app.save(alert)
    with acting_as(RequestContext(actor_id="staff-so", via="api")):
        alert.acknowledge("staff-so", "expected: onboarding")
        live.app.save(alert)
    assert live.webhooks.counts() == {"pending": 1}
    target = LocalTarget("local", tmp_path / "backups")
    create_backup(live, target)

    url = f"sqlite:///{tmp_path / 'restored.sqlite'}"
    result = restore_backup(live=live, target=target, into_url=url)
    restored = _restored_app(live, url, result.keys_into)
    try:
        back = restored.alert_table.get(str(alert.id))
        assert back["status"] == "acknowledged" and back["note"] == "expected: onboarding"
        assert back["client_addr"] == "192.0.2.1"  # sealed under the system key, restored with it
        assert restored.webhooks.counts() == {}
    finally:
        restored.close()
