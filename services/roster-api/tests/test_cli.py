"""`roster-api keys create | list | revoke`: the key rotation the runbook (deploy/README.md) describes."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from roster_api.cli import app as cli


@pytest.fixture
def run(database_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("ROSTER_DATABASE_URL", database_url)
    return CliRunner()


def test_ops_key_rotation_create_list_revoke(run: CliRunner, client: TestClient) -> None:
    created = run.invoke(cli, ["keys", "create", "--name", "support-tool", "--scope", "admin"])
    assert created.exit_code == 0, created.output
    raw = created.stdout.strip()
    headers = {"Authorization": f"Bearer {raw}"}
    assert client.get("/v1/districts", headers=headers).status_code == 200

    listed = run.invoke(cli, ["keys", "list"])
    assert listed.exit_code == 0, listed.output
    rows = [line.split("\t") for line in listed.stdout.strip().splitlines()[1:]]
    mine = [row for row in rows if row[1] == "support-tool"]
    assert len(mine) == 1
    key_id = mine[0][0]
    assert mine[0][2] == "admin"
    assert raw not in listed.stdout, "the key itself is never shown again"

    revoked = run.invoke(cli, ["keys", "revoke", key_id])
    assert revoked.exit_code == 0, revoked.output
    app = client.app
    app.state.key_cache.clear()  # type: ignore[attr-defined]
    response = client.get("/v1/districts", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "UNAUTHENTICATED"

    assert key_id not in run.invoke(cli, ["keys", "list"]).stdout
    assert key_id in run.invoke(cli, ["keys", "list", "--revoked"]).stdout
    again = run.invoke(cli, ["keys", "revoke", key_id])
    assert again.exit_code == 0
    assert "already revoked" in again.output

    audit = client.get("/v1/audit", headers={"Authorization": f"Bearer {_admin(run)}"}).json()
    actions = {(e["action"], e["target"]) for e in audit["items"]}
    assert ("api_key.revoke", key_id) in actions


def test_ops_revoke_unknown_key_says_so(run: CliRunner) -> None:
    result = run.invoke(cli, ["keys", "revoke", "key_nope"])
    assert result.exit_code == 2
    assert "no API key 'key_nope'" in result.output


def _admin(run: CliRunner) -> str:
    return run.invoke(cli, ["keys", "create", "--name", "auditor", "--scope", "admin"]).stdout.strip()
