"""Size and quota refusals as the district's SFTP client shows them: asyncssh's client, and the OpenSSH
`sftp` client when it is installed (skipped otherwise)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from roster_api.db import session_scope
from roster_api.intake import credentials

SftpEnv = Any  # tests/intake/conftest.py
OPENSSH = shutil.which("sftp")


def _add_key(env: SftpEnv, tmp_path: Path) -> Path:
    key = asyncssh.generate_private_key("ssh-ed25519")
    with session_scope(env.engine) as session:
        credentials.add_public_key(
            session=session,
            district_id=env.login.district_id,
            credential_id=env.login.credential_id,
            public_key=key.export_public_key("openssh").decode(),
            actor="test",
        )
    path = tmp_path / "id_ed25519"
    key.write_private_key(str(path))
    path.chmod(0o600)
    return path


async def _openssh(env: SftpEnv, tmp_path: Path, commands: str) -> tuple[int, str]:
    identity = _add_key(env, tmp_path)
    known = tmp_path / "known_hosts"
    host_key = asyncssh.read_private_key(str(env.settings.data_dir / "ssh_host_ed25519_key"))
    known.write_text(f"[127.0.0.1]:{env.port} {host_key.export_public_key('openssh').decode()}")
    batch = tmp_path / "batch"
    batch.write_text(commands)
    proc = await asyncio.create_subprocess_exec(
        OPENSSH or "sftp",
        "-F",
        "/dev/null",
        "-b",
        str(batch),
        "-P",
        str(env.port),
        "-o",
        f"UserKnownHostsFile={known}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f"IdentityFile={identity}",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "BatchMode=yes",
        f"{env.login.username}@127.0.0.1",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode()


def _fill_quota(env: SftpEnv, tmp_path: Path) -> Path:
    """Leaves less room in the district's folder than one small upload needs."""
    folder = env.folder()
    (folder / "results").mkdir(parents=True, exist_ok=True)
    (folder / "results" / "old.txt").write_bytes(b"x" * (env.settings.sftp_quota_bytes - 1024))
    small = tmp_path / "small.csv"
    small.write_bytes(b"y" * 4096)
    return small


def _too_big(env: SftpEnv, tmp_path: Path) -> Path:
    big = tmp_path / "big.csv"
    big.write_bytes(b"x" * (env.settings.sftp_max_file_bytes + 1))
    return big


SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@SQLITE_ONLY  # no database work: one database is enough
@pytest.mark.parametrize(
    ("case", "message"),
    [("size", "files are limited to 65536 bytes"), ("quota", "folder is limited to 163840 bytes")],
)
async def test_size_and_quota_refusals_are_permission_denied_with_the_reason(
    sftp_env: SftpEnv, tmp_path: Path, case: str, message: str
) -> None:
    local = _too_big(sftp_env, tmp_path) if case == "size" else _fill_quota(sftp_env, tmp_path)
    async with await sftp_env.connect() as conn, conn.start_sftp_client() as sftp:
        with pytest.raises(asyncssh.SFTPPermissionDenied) as info:
            await sftp.put(str(local), "roster.csv")
    assert message in str(info.value.reason)
    assert not (sftp_env.folder() / "roster.csv").exists()
    assert sftp_env.recorder.calls == []


@SQLITE_ONLY
@pytest.mark.skipif(OPENSSH is None, reason="the OpenSSH sftp client is not installed")
@pytest.mark.parametrize(
    ("case", "message"),
    [("size", "files are limited to 65536 bytes"), ("quota", "folder is limited to 163840 bytes")],
)
async def test_openssh_client_prints_why_an_upload_was_refused(
    sftp_env: SftpEnv, tmp_path: Path, case: str, message: str
) -> None:
    local = _too_big(sftp_env, tmp_path) if case == "size" else _fill_quota(sftp_env, tmp_path)
    code, out = await _openssh(sftp_env, tmp_path, f"put {local} roster.csv\n")
    assert code != 0
    refusal = next(line for line in out.splitlines() if line.startswith("roster-api: Upload refused:"))
    assert message in refusal
    assert 'write remote "/roster.csv": Permission denied' in out
    assert "Failure" not in out
    assert not (sftp_env.folder() / "roster.csv").exists()


@SQLITE_ONLY
@pytest.mark.skipif(OPENSSH is None, reason="the OpenSSH sftp client is not installed")
async def test_openssh_client_uploads_and_reads_results(sftp_env: SftpEnv, tmp_path: Path) -> None:
    local = tmp_path / "r.csv"
    local.write_bytes(b"school_id,school_name\n1,North\n")
    code, out = await _openssh(sftp_env, tmp_path, f"put {local} roster.csv\nls\n")
    assert code == 0, out
    assert "roster-api:" not in out
    assert (sftp_env.folder() / "roster.csv").read_bytes() == local.read_bytes()
    assert len(sftp_env.recorder.calls) == 1
