"""The SFTP server's persistent ed25519 host key. Districts pin its fingerprint on first connect, so it
must survive restarts; it is created once, race-free, with mode 0600."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import asyncssh

from roster_api.settings import Settings


@dataclass(frozen=True)
class HostKeyInfo:
    algorithm: str
    fingerprint: str
    public_key: str


def host_key_path(settings: Settings) -> Path:
    return settings.sftp_host_key_path or settings.data_dir / "ssh_host_ed25519_key"


def load_or_create_host_key(settings: Settings) -> asyncssh.SSHKey:
    path = host_key_path(settings)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = asyncssh.generate_private_key("ssh-ed25519")
        data = key.export_private_key("openssh")
        # O_EXCL: when the API and the SFTP server start together, one key wins and both load it.
        with contextlib.suppress(FileExistsError):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
    return asyncssh.read_private_key(str(path))


def host_key_info(settings: Settings) -> HostKeyInfo:
    """Created here too when missing, so support can hand out the fingerprint before the SFTP server's
    first start; both read the same file (ROSTER_DATA_DIR or ROSTER_SFTP_HOST_KEY_PATH, which every
    roster-api process must share, see deploy/README.md)."""
    key = load_or_create_host_key(settings)
    public = key.export_public_key("openssh").decode().strip()
    return HostKeyInfo(
        algorithm=key.get_algorithm(), fingerprint=key.get_fingerprint("sha256"), public_key=public
    )
