"""Fixtures for the SFTP intake: a district with an SFTP login and the real asyncssh server on
127.0.0.1 port 0, and an asyncssh client that pins the server's host key."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
import pytest
import sqlalchemy as sa

from roster_api.db import session_scope
from roster_api.intake import credentials
from roster_api.intake.sftp import SftpIntake
from roster_api.models import District
from roster_api.settings import Settings


@dataclass
class Login:
    district_id: str
    username: str
    password: str
    credential_id: str


def add_district(engine: sa.Engine, district_id: str, **fields: Any) -> None:
    with session_scope(engine) as session:
        session.add(District(id=district_id, name=district_id.title(), **fields))


def add_login(engine: sa.Engine, district_id: str, public_keys: list[str] | None = None) -> Login:
    with session_scope(engine) as session:
        district = session.get(District, district_id)
        assert district is not None
        credential, password = credentials.create_credential(
            session=session, district=district, password=True, public_keys=public_keys or [], actor="test"
        )
    assert password is not None
    return Login(district_id, credential.username, password, credential.id)


@pytest.fixture
def sftp_settings(roster_settings: Settings) -> Settings:
    return roster_settings.model_copy(
        update={
            "sftp_max_file_bytes": 64 * 1024,
            "sftp_quota_bytes": 160 * 1024,
            "sftp_lockout_failures": 4,
            "sftp_lockout_seconds": 1.0,
            "sftp_max_sessions_per_user": 2,
        }
    )


class Recorder:
    """Stands in for the import queue where a test looks only at what the server hands over."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, **kwargs: Any) -> Any:
        kwargs["content"] = Path(kwargs["src_path"]).read_bytes()
        self.calls.append(kwargs)
        return type("Run", (), {"id": f"imp_{len(self.calls)}"})()


@dataclass
class SftpEnv:
    intake: SftpIntake
    engine: sa.Engine
    settings: Settings
    login: Login
    recorder: Recorder
    known_hosts: Any

    def add_district(self, district_id: str, **fields: Any) -> None:
        add_district(self.engine, district_id, **fields)

    def add_login(self, district_id: str) -> Login:
        return add_login(self.engine, district_id)

    @property
    def port(self) -> int:
        return self.intake.port

    def folder(self, district_id: str | None = None) -> Path:
        return self.settings.data_dir / "sftp" / (district_id or self.login.district_id)

    async def connect(
        self, username: str | None = None, password: str | None = None, **options: Any
    ) -> asyncssh.SSHClientConnection:
        if "client_keys" not in options:
            options["client_keys"] = None
        return await asyncssh.connect(
            "127.0.0.1",
            self.port,
            username=username or self.login.username,
            password=self.login.password if password is None else password,
            known_hosts=self.known_hosts,
            agent_path=None,
            config=None,
            **options,
        )


StartIntake = Callable[..., Awaitable[SftpEnv]]


@pytest.fixture
async def start_intake(
    sftp_settings: Settings, roster_engine: sa.Engine
) -> AsyncIterator[Callable[..., Awaitable[SftpEnv]]]:
    started: list[SftpIntake] = []

    async def start(*, settings: Settings | None = None, enqueue: Any = "record") -> SftpEnv:
        settings = settings or sftp_settings
        recorder = Recorder()
        if not started:
            add_district(roster_engine, "d1")
            login = add_login(roster_engine, "d1")
        else:
            login = start.login  # type: ignore[attr-defined]
        start.login = login  # type: ignore[attr-defined]
        intake = SftpIntake(
            settings=settings,
            engine=roster_engine,
            enqueue=recorder if enqueue == "record" else enqueue,
            host="127.0.0.1",
            port=0,
        )
        intake.throttle.delay_base = 0.01  # the delays' doubling is tested with a clock; keep tests fast
        await intake.start()
        started.append(intake)
        public = asyncssh.read_private_key(str(settings.data_dir / "ssh_host_ed25519_key"))
        known = asyncssh.import_known_hosts(
            f"[127.0.0.1]:{intake.port} {public.export_public_key('openssh').decode().strip()}\n"
        )
        return SftpEnv(intake, roster_engine, settings, login, recorder, known)

    yield start
    for intake in started:
        await intake.stop()


@pytest.fixture
async def sftp_env(start_intake: StartIntake) -> SftpEnv:
    return await start_intake()
