"""SFTP credentials over HTTP: created once with a password shown once (Argon2id at rest), public keys,
rotation, revocation, and the host key endpoint."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncssh
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from roster_api.intake import credentials
from roster_api.intake.hostkey import load_or_create_host_key
from roster_api.models import AuditEvent, SftpCredential

URL = "/v1/districts/{}/sftp-credentials"


def _ed25519() -> str:
    return (
        asyncssh.generate_private_key("ssh-ed25519", comment="it@district.org").export_public_key().decode()
    )


@pytest.fixture
def district(create_district: Callable[..., dict[str, Any]]) -> str:
    district_id: str = create_district("d1")["id"]
    return district_id


def test_create_returns_the_password_once_and_stores_argon2id(
    client: TestClient, admin_headers: dict[str, str], district: str, roster_engine: sa.Engine
) -> None:
    response = client.post(URL.format(district), json={}, headers=admin_headers)
    assert response.status_code == 201, response.text
    body = response.json()
    password = body["password"]
    assert len(password) >= 15
    assert body["username"].startswith("d1-")
    assert body["has_password"] is True
    assert body["connection"]["host_key_fingerprint"].startswith("SHA256:")
    with Session(roster_engine) as session:
        stored = session.exec(select(SftpCredential)).one()
    assert stored.password_hash is not None
    assert stored.password_hash.startswith("$argon2id$")
    assert password not in stored.password_hash
    login = credentials.verify_password(engine=roster_engine, username=body["username"], password=password)
    assert login is not None
    assert login.district_id == "d1"
    assert credentials.verify_password(engine=roster_engine, username=body["username"], password="x") is None

    listed = client.get(URL.format(district), headers=admin_headers).json()
    assert listed["total"] == 1
    assert "password" not in listed["items"][0]
    one = client.get(URL.format(district) + f"/{body['id']}", headers=admin_headers).json()
    assert "password" not in one
    assert password not in response.text.replace(password, "", 1)


def test_one_active_login_per_district(
    client: TestClient, admin_headers: dict[str, str], district: str
) -> None:
    assert client.post(URL.format(district), json={}, headers=admin_headers).status_code == 201
    response = client.post(URL.format(district), json={}, headers=admin_headers)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "CONFLICT"


def test_rotate_replaces_the_password(
    client: TestClient, admin_headers: dict[str, str], district: str, roster_engine: sa.Engine
) -> None:
    created = client.post(URL.format(district), json={}, headers=admin_headers).json()
    response = client.post(URL.format(district) + f"/{created['id']}/rotate", headers=admin_headers)
    assert response.status_code == 200, response.text
    rotated = response.json()
    assert rotated["password"] != created["password"]
    assert rotated["rotated_at"] is not None
    user = created["username"]
    assert (
        credentials.verify_password(engine=roster_engine, username=user, password=created["password"]) is None
    )
    assert credentials.verify_password(engine=roster_engine, username=user, password=rotated["password"])


def test_key_only_login_and_key_management(
    client: TestClient, admin_headers: dict[str, str], district: str, roster_engine: sa.Engine
) -> None:
    key = _ed25519()
    response = client.post(
        URL.format(district), json={"password": False, "public_keys": [key]}, headers=admin_headers
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["password"] is None
    assert body["has_password"] is False
    [listed_key] = body["public_keys"]
    assert listed_key["algorithm"] == "ssh-ed25519"
    with Session(roster_engine) as session:
        stored = session.exec(select(SftpCredential)).one()
    assert "it@district.org" not in stored.public_keys[0]  # comments are not kept
    base = URL.format(district) + f"/{body['id']}/public-keys"
    second = _ed25519()
    added = client.post(base, json={"public_key": second}, headers=admin_headers)
    assert added.status_code == 201
    assert len(added.json()["public_keys"]) == 2
    removed = client.delete(base, params={"fingerprint": listed_key["fingerprint"]}, headers=admin_headers)
    assert removed.status_code == 200
    assert [k["fingerprint"] for k in removed.json()["public_keys"]] != [listed_key["fingerprint"]]
    assert len(removed.json()["public_keys"]) == 1
    missing = client.delete(base, params={"fingerprint": listed_key["fingerprint"]}, headers=admin_headers)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "SFTP_CREDENTIAL_NOT_FOUND"
    # with no password, password logins fail whatever is sent
    assert credentials.verify_password(engine=roster_engine, username=body["username"], password="") is None


@pytest.mark.parametrize(
    "body",
    [
        {"password": False},
        {"public_keys": ["not a key"]},
        {"public_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDfake"]},
        {
            "public_keys": [
                asyncssh.generate_private_key("ssh-rsa", key_size=2048).export_public_key().decode()
            ]
        },
        {"unknown": 1},
    ],
)
def test_invalid_requests(
    client: TestClient, admin_headers: dict[str, str], district: str, body: dict[str, Any]
) -> None:
    response = client.post(URL.format(district), json=body, headers=admin_headers)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"
    assert client.get(URL.format(district), headers=admin_headers).json()["total"] == 0


def test_revoke(
    client: TestClient, admin_headers: dict[str, str], district: str, roster_engine: sa.Engine
) -> None:
    created = client.post(URL.format(district), json={}, headers=admin_headers).json()
    path = URL.format(district) + f"/{created['id']}"
    assert client.delete(path, headers=admin_headers).status_code == 204
    assert client.delete(path, headers=admin_headers).status_code == 204  # idempotent
    user, password = created["username"], created["password"]
    assert credentials.verify_password(engine=roster_engine, username=user, password=password) is None
    assert client.post(path + "/rotate", headers=admin_headers).status_code == 409
    # a new login can be created after a revocation, with a new username
    again = client.post(URL.format(district), json={}, headers=admin_headers).json()
    assert again["username"] != user
    with Session(roster_engine) as session:
        actions = [e.action for e in session.exec(select(AuditEvent)).all()]
    assert actions.count("sftp_credential.create") == 2
    assert "sftp_credential.revoke" in actions
    assert all(password not in str(e) for e in actions)


def test_unknown_credential_and_district(
    client: TestClient, admin_headers: dict[str, str], district: str
) -> None:
    response = client.post(URL.format(district) + "/sftp_nope/rotate", headers=admin_headers)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "SFTP_CREDENTIAL_NOT_FOUND"
    response = client.post(URL.format("nowhere"), json={}, headers=admin_headers)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "DISTRICT_NOT_FOUND"


def test_host_key_endpoint_matches_the_key_file(
    client: TestClient, admin_headers: dict[str, str], roster_settings: Any, district: str
) -> None:
    response = client.get("/v1/sftp/host-key", headers=admin_headers)
    assert response.status_code == 200, response.text
    body = response.json()
    key = asyncssh.read_private_key(str(roster_settings.data_dir / "ssh_host_ed25519_key"))
    assert body["fingerprint"] == key.get_fingerprint("sha256")
    assert body["algorithm"] == "ssh-ed25519"
    # the SFTP server loads the key the API created (same data directory)
    assert load_or_create_host_key(roster_settings).get_fingerprint("sha256") == body["fingerprint"]
    assert body["known_hosts_line"] == f"[localhost]:2222 {body['public_key']}"
    # stable across calls (the file is reused, not regenerated)
    assert client.get("/v1/sftp/host-key", headers=admin_headers).json() == body
    created = client.post(URL.format(district), json={}, headers=admin_headers).json()
    assert created["connection"] == {
        "host": "localhost",
        "port": 2222,
        "host_key_fingerprint": body["fingerprint"],
    }
