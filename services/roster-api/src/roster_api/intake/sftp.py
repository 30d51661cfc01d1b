"""SFTP intake: districts upload their roster CSV, and read the answer from `results/`.

One asyncssh server, SFTP only. Each district sees a virtual folder `data_dir/sftp/<district_id>/`:

    /<name>.csv        its uploads (create, overwrite, read back)
    /results/...       the result of each import (read only)

Every client path is normalised and must be one of those shapes, so `../`, absolute paths, symlinks,
hard links, directories and any other operation are refused instead of being mapped somewhere. An upload
is written to `.partial/` (hidden) and renamed over the final name only when the client closes the file;
an upload cut off mid-way (connection lost, session ended, size or quota exceeded) is deleted and never
imported.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import posixpath
import re
import secrets
import stat
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import asyncssh
import sqlalchemy as sa
from asyncssh.encryption import get_encryption_algs
from asyncssh.kex import get_kex_algs
from asyncssh.mac import get_mac_algs
from asyncssh.public_key import get_public_key_algs
from sqlmodel import Session, col, select

from roster_api.db import make_engine
from roster_api.errors import RosterError
from roster_api.importing.uploads import Enqueue, enqueue_file
from roster_api.intake.credentials import (
    LOGIN_LOCKOUT,
    LOGIN_SUCCESS,
    SftpLogin,
    login_for_public_key,
    record_login_event,
    verify_password,
)
from roster_api.intake.hostkey import load_or_create_host_key
from roster_api.intake.loose_files import LooseFiles, is_clever_file
from roster_api.intake.preview import is_preview
from roster_api.intake.results import district_sftp_dir, remove_expired
from roster_api.models import District, SftpCredential
from roster_api.settings import Settings

log = logging.getLogger("roster_api.sftp")

MIN_ASYNCSSH = (2, 23, 1)  # Terrapin, SCP traversal and config-substitution fixes (docs/security.md F1)

# Preference order of docs/security.md F3: post-quantum hybrid first; no SHA-1, no CBC, no umac.
_KEX = [
    "mlkem768x25519-sha256",
    "sntrup761x25519-sha512",
    "sntrup761x25519-sha512@openssh.com",
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
    "ecdh-sha2-nistp256",
]
_CIPHERS = [
    "aes256-gcm@openssh.com",
    "aes128-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",  # safe because asyncssh always negotiates strict kex
    "aes256-ctr",
    "aes128-ctr",
]
_MACS = ["hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com"]
_SIGNATURES = [
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "rsa-sha2-512",
    "rsa-sha2-256",
]

# a roster CSV, or a zip of OneRoster's or Clever's files (importing.formats tells them apart by content)
UPLOAD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,59}\.(csv|zip)$", re.IGNORECASE)
RESULT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,200}$")
RESULTS_DIR = "results"
PARTIAL_DIR = ".partial"
STALE_PARTIAL_SECONDS = 24 * 3600
# After this many rejected public keys on one connection it is closed (clients offer every agent key).
MAX_KEY_REJECTIONS = 10
MAX_UPLOAD_FILES = 100
RETENTION_SWEEP_SECONDS = 3600.0
ARGON2_CONCURRENCY = 4
FAILURE_WINDOW_SECONDS = 900.0
MAX_LOCKOUT_SECONDS = 3600.0
# A password attempt for a username that failed recently waits 0.25 s, doubling per failure, at most 4 s.
LOGIN_DELAY_BASE_SECONDS = 0.25
MAX_LOGIN_DELAY_SECONDS = 4.0
# Failures one address may spend across usernames: this many times the per-(username, address) threshold.
ADDRESS_BUDGET_FACTOR = 2
MAX_TRACKED_KEYS = 100_000
KEPT_FAILURES = 64
# Lockouts written to the audit log per minute (each is logged anyway): a spray from many addresses
# must not turn into a flood of database writes.
LOCKOUT_AUDITS_PER_MINUTE = 60


def algorithms() -> dict[str, list[str]]:
    """The explicit lists handed to asyncssh, restricted to what this build of asyncssh implements."""

    def available(wanted: list[str], have: list[bytes]) -> list[str]:
        names = {a.decode() for a in have}
        return [a for a in wanted if a in names]

    return {
        "kex_algs": available(_KEX, get_kex_algs()),
        "encryption_algs": available(_CIPHERS, get_encryption_algs()),
        "mac_algs": available(_MACS, get_mac_algs()),
        "signature_algs": available(_SIGNATURES, get_public_key_algs()),
        "compression_algs": ["none"],
    }


def check_asyncssh_version() -> None:
    parts = tuple(int(p) for p in re.findall(r"\d+", asyncssh.__version__)[:3])
    if parts < MIN_ASYNCSSH:
        raise RuntimeError(
            f"asyncssh {asyncssh.__version__} is too old; the SFTP intake needs >= 2.23.1 (security fixes)"
        )


def _safe(value: str) -> str:
    """A client-chosen string fit for a log line: bounded, printable."""
    return "".join(ch if ch.isprintable() else "?" for ch in value[:64])


# --- brute force -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What the throttle says about a password attempt before it is checked."""

    refused_for: float  # > 0: refused unchecked (and not counted) for this many more seconds
    delay: float  # seconds to wait before checking the password


class FailureThrottle:
    """Password failures within 15 minutes, counted per (username, address), per address across
    usernames, and per username across addresses. Public-key logins never ask it.

    - A (username, address) pair with `threshold` failures is refused for `base_seconds`; each further
      failure once that pause is over doubles it (at most an hour).
    - An address with `address_budget` failures, whatever the usernames, is refused the same way.
    - Failures of a username from other addresses never refuse it: they only slow each password attempt
      for it down (`delay_base` doubling per recent failure, at most `max_delay`), so the right password
      from an address that has not failed still gets in.
    - A refused attempt is not checked and not counted: retrying during a pause does not extend it.
    """

    def __init__(
        self,
        *,
        threshold: int,
        base_seconds: float,
        address_budget: int | None = None,
        delay_base: float = LOGIN_DELAY_BASE_SECONDS,
        max_delay: float = MAX_LOGIN_DELAY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.address_budget = address_budget or ADDRESS_BUDGET_FACTOR * threshold
        self.base_seconds = base_seconds
        self.delay_base = delay_base
        self.max_delay = max_delay
        self.clock = clock
        self._failures: dict[str, list[float]] = {}
        self._blocked_until: dict[str, float] = {}

    @staticmethod
    def _keys(username: str, address: str) -> tuple[str, str, str]:
        return f"pair:{username}\0{address}", f"addr:{address}", f"user:{username}"

    def _recent(self, key: str) -> list[float]:
        now = self.clock()
        kept = [t for t in self._failures.get(key, []) if now - t < FAILURE_WINDOW_SECONDS]
        if kept:
            self._failures[key] = kept
        else:
            self._failures.pop(key, None)
        return kept

    def _blocked_for(self, key: str) -> float:
        until = self._blocked_until.get(key)
        if until is None:
            return 0.0
        remaining = until - self.clock()
        if remaining <= 0:
            del self._blocked_until[key]
            return 0.0
        return remaining

    def check(self, username: str, address: str) -> Verdict:
        pair, addr, user = self._keys(username, address)
        refused = max(self._blocked_for(pair), self._blocked_for(addr))
        if refused:
            return Verdict(refused_for=refused, delay=0.0)
        failures = len(self._recent(user))
        delay = min(self.delay_base * 2.0 ** min(failures - 1, 20), self.max_delay) if failures else 0.0
        return Verdict(refused_for=0.0, delay=delay)

    def _remember(self, key: str) -> int:
        """Adds a failure; returns how many there are in the window. Only the newest are kept (pauses
        and delays are capped), so the lists stay short."""
        recent = self._recent(key)
        recent.append(self.clock())
        self._failures[key] = recent[-max(KEPT_FAILURES, self.threshold, self.address_budget) :]
        return len(recent)

    def _count(self, key: str, limit: int) -> float:
        excess = self._remember(key) - limit
        if excess < 0 or self._blocked_for(key):
            # An attempt checked while a pause began (they run concurrently) does not extend it.
            return 0.0
        pause = min(self.base_seconds * 2.0 ** min(excess, 20), MAX_LOCKOUT_SECONDS)
        self._blocked_until[key] = self.clock() + pause
        return pause

    def _bound_memory(self) -> None:
        """At most MAX_TRACKED_KEYS counters under a distributed spray: expired ones go first."""
        if len(self._failures) > MAX_TRACKED_KEYS:
            for key in list(self._failures):
                self._recent(key)
        if len(self._failures) > MAX_TRACKED_KEYS:
            self._failures.clear()
        if len(self._blocked_until) > MAX_TRACKED_KEYS:
            for key in list(self._blocked_until):
                self._blocked_for(key)

    def failure(self, username: str, address: str) -> tuple[float, float]:
        """Counts a checked, failed password. Returns the pauses that start now for the pair and for
        the address (0 when none)."""
        self._bound_memory()
        pair, addr, user = self._keys(username, address)
        self._remember(user)
        return self._count(pair, self.threshold), self._count(addr, self.address_budget)

    def success(self, username: str, address: str) -> None:
        pair, _, _ = self._keys(username, address)
        self._failures.pop(pair, None)
        self._blocked_until.pop(pair, None)


# --- upload hand-off ---------------------------------------------------------------------------


def default_enqueue() -> Enqueue:
    return enqueue_file


# --- per-connection state ----------------------------------------------------------------------


@dataclass
class _ConnState:
    conn: asyncssh.SSHServerConnection
    address: str
    login: SftpLogin | None = None
    method: str = ""
    password_failures: int = 0
    key_rejections: int = 0
    last_activity: float = field(default_factory=time.monotonic)
    sftp_sessions: int = 0


class _SSHServer(asyncssh.SSHServer):
    def __init__(self, intake: SftpIntake) -> None:
        self.intake = intake
        self.state: _ConnState | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        peer = conn.get_extra_info("peername") or ("?", 0)
        self.state = _ConnState(conn=conn, address=str(peer[0]))
        self.intake.connections[conn] = self.state

    def connection_lost(self, exc: Exception | None) -> None:
        if self.state is not None:
            self.intake.connections.pop(self.state.conn, None)

    def begin_auth(self, username: str) -> bool:
        return True  # every login needs credentials

    def _open(self) -> bool:
        state = self.state
        return state is not None and state.password_failures < self.intake.settings.sftp_max_auth_failures

    def password_auth_supported(self) -> bool:
        return self._open()

    def public_key_auth_supported(self) -> bool:
        return self._open() and self.state is not None and self.state.key_rejections < MAX_KEY_REJECTIONS

    def kbdint_auth_supported(self) -> bool:
        return False

    def host_based_auth_supported(self) -> bool:
        return False

    async def validate_password(self, username: str, password: str) -> bool:
        state = self.state
        assert state is not None
        intake = self.intake
        verdict = intake.throttle.check(username, state.address)
        if verdict.delay and not verdict.refused_for:
            await asyncio.sleep(verdict.delay)
        login = None
        async with intake.hashing:
            # Checked again: attempts that waited here may have locked the pair out meanwhile.
            verdict = intake.throttle.check(username, state.address)
            if not verdict.refused_for:
                login = await asyncio.to_thread(
                    verify_password, engine=intake.engine, username=username, password=password
                )
        if verdict.refused_for:
            self._refused(username)
            return False
        if login is None:
            self._failed(username)
            return False
        return self._succeeded(login, "password")

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        # Never throttled by password failures: a stranger guessing passwords cannot lock a key out.
        state = self.state
        assert state is not None
        login = await asyncio.to_thread(
            login_for_public_key, engine=self.intake.engine, username=username, key=key
        )
        if login is None:
            # Not counted towards the lockout: clients offer every key of their agent in turn.
            state.key_rejections += 1
            self._log_failure(username, "publickey", "key not registered")
            return False
        # asyncssh verifies the client's signature after this; auth_completed() records the success.
        state.login = login
        state.method = "publickey"
        return True

    def _succeeded(self, login: SftpLogin, method: str) -> bool:
        state = self.state
        assert state is not None
        state.login = login
        state.method = method
        self.intake.throttle.success(login.username, state.address)
        return True

    def _log_failure(self, username: str, method: str, reason: str) -> None:
        assert self.state is not None
        log.warning(
            "sftp login failed",
            extra={
                "fields": {
                    "event": "sftp.auth.failure",
                    "username": _safe(username),
                    "address": self.state.address,
                    "method": method,
                    "reason": reason,
                }
            },
        )

    def _refused(self, username: str) -> None:
        """A password attempt during a pause: refused unchecked, and not counted (no extension)."""
        self._log_failure(username, "password", "locked out")
        self._count_on_connection()

    def _failed(self, username: str) -> None:
        state = self.state
        assert state is not None
        self._log_failure(username, "password", "bad credentials")
        pair_pause, address_pause = self.intake.throttle.failure(username, state.address)
        if pair_pause:
            self.intake.lockout(username, state.address, pair_pause, scope="username and address")
        if address_pause:
            self.intake.lockout(username, state.address, address_pause, scope="address")
        self._count_on_connection()

    def _count_on_connection(self) -> None:
        state = self.state
        assert state is not None
        state.password_failures += 1
        if state.password_failures >= self.intake.settings.sftp_max_auth_failures:
            log.warning(
                "sftp connection closed after repeated login failures",
                extra={"fields": {"event": "sftp.auth.disconnect", "address": state.address}},
            )
            state.conn.close()

    def auth_completed(self) -> None:
        state = self.state
        assert state is not None
        assert state.login is not None
        if state.conn.get_extra_info("username") != state.login.username:
            # A client may change usernames between attempts; only the login that authenticated counts.
            state.conn.close()
            return
        state.last_activity = time.monotonic()
        log.info(
            "sftp login",
            extra={
                "fields": {
                    "event": "sftp.auth.success",
                    "username": state.login.username,
                    "district_id": state.login.district_id,
                    "address": state.address,
                    "method": state.method,
                }
            },
        )
        self.intake.record_login_event(
            LOGIN_SUCCESS,
            state.login.username,
            {"address": state.address, "method": state.method},
        )


# --- the district's virtual folder -------------------------------------------------------------


@dataclass
class _Upload:
    name: str
    final: Path
    temp: Path
    fd: int
    district_id: str
    size: int = 0
    base_usage: int = 0
    error: str | None = None
    closed: bool = False


@dataclass
class _Download:
    fd: int


def _called_by_client_close() -> bool:
    """asyncssh closes every file still open when a session ends (connection lost, channel closed,
    idle timeout) through the same `close()` as a client's CLOSE request. Only the latter means the
    client finished its upload, so only then is the file kept. The caller is asyncssh's handler method
    for the request; the interrupted-upload test pins this down for the pinned asyncssh version."""
    caller = sys._getframe(2)
    return caller.f_code.co_name == "_process_close"


class DistrictSFTPServer(asyncssh.SFTPServer):
    def __init__(
        self,
        chan: asyncssh.SSHServerChannel[bytes],
        intake: SftpIntake,
        state: _ConnState,
        denied: str | None = None,
    ) -> None:
        super().__init__(chan)
        assert state.login is not None
        # A session over the per-user cap is answered, but every request fails with this reason.
        self.denied = denied
        self.intake = intake
        self.state = state
        self.login = state.login
        self.root = intake.district_dir(self.login.district_id)

    # paths

    def _touch(self) -> None:
        self.state.last_activity = time.monotonic()

    def _virtual(self, path: bytes) -> str:
        self._touch()
        if self.denied is not None:
            raise asyncssh.SFTPPermissionDenied(self.denied)
        try:
            text = path.decode("utf-8")
        except UnicodeDecodeError:
            raise asyncssh.SFTPNoSuchFile("File names must be UTF-8") from None
        if "\x00" in text or "\\" in text or len(text) > 1024:
            raise asyncssh.SFTPNoSuchFile("Invalid file name")
        # A path that climbs above the folder is refused outright rather than clamped to it, so a
        # client that tries `../` learns it cannot, instead of silently writing somewhere else.
        parts: list[str] = []
        for part in text.split("/"):
            if part in {"", "."}:
                continue
            if part == "..":
                if not parts:
                    raise asyncssh.SFTPPermissionDenied("Paths outside your folder are not available")
                parts.pop()
            else:
                parts.append(part)
        return "/" + "/".join(parts)

    def _local(self, virtual: str) -> tuple[str, Path]:
        """(kind, local path) for a virtual path; anything else does not exist for this district."""
        if virtual == "/":
            return "root", self.root
        if virtual == "/" + RESULTS_DIR:
            return "results", self._results_dir()
        parent, name = posixpath.split(virtual)
        if parent == "/" and UPLOAD_NAME.match(name):
            return "upload", self.root / name
        if parent == "/" + RESULTS_DIR and RESULT_NAME.match(name):
            return "result", self._results_dir() / name
        raise asyncssh.SFTPPermissionDenied(
            "Only <name>.csv files in your home folder and the files in results/ are available"
        )

    def _results_dir(self) -> Path:
        # O_NOFOLLOW guards only the last component of a path: make sure `results` itself is a real
        # folder, not a link planted on the server side.
        path = self.root / RESULTS_DIR
        try:
            is_dir = stat.S_ISDIR(path.lstat().st_mode)
        except FileNotFoundError:
            is_dir = False
        if not is_dir:
            raise asyncssh.SFTPNoSuchFile("No such folder")
        return path

    def _stat(self, path: bytes) -> os.stat_result:
        kind, local = self._local(self._virtual(path))
        try:
            result = os.stat(local, follow_symlinks=False)
        except FileNotFoundError:
            raise asyncssh.SFTPNoSuchFile("No such file") from None
        wanted = stat.S_ISDIR if kind in {"root", "results"} else stat.S_ISREG
        if not wanted(result.st_mode):
            raise asyncssh.SFTPNoSuchFile("No such file")
        return result

    # read-only operations

    def realpath(self, path: bytes) -> bytes:
        return self._virtual(path).encode()

    def stat(self, path: bytes) -> os.stat_result:
        return self._stat(path)

    def lstat(self, path: bytes) -> os.stat_result:
        return self._stat(path)

    async def scandir(self, path: bytes) -> AsyncIterator[asyncssh.SFTPName]:
        kind, local = self._local(self._virtual(path))
        if kind not in {"root", "results"}:
            raise asyncssh.SFTPNotADirectory("Not a directory")
        pattern = UPLOAD_NAME if kind == "root" else RESULT_NAME
        for dot in (".", ".."):
            yield asyncssh.SFTPName(dot.encode(), attrs=asyncssh.SFTPAttrs.from_local(os.stat(local)))
        with os.scandir(local) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                info = entry.stat(follow_symlinks=False)
                is_results = kind == "root" and entry.name == RESULTS_DIR and stat.S_ISDIR(info.st_mode)
                if is_results or (stat.S_ISREG(info.st_mode) and pattern.match(entry.name)):
                    yield asyncssh.SFTPName(entry.name.encode(), attrs=asyncssh.SFTPAttrs.from_local(info))

    # files

    def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> object:
        kind, local = self._local(self._virtual(path))
        if kind in {"root", "results"}:
            raise asyncssh.SFTPPermissionDenied("That is a folder")
        writing = bool(
            pflags & (asyncssh.FXF_WRITE | asyncssh.FXF_APPEND | asyncssh.FXF_CREAT | asyncssh.FXF_TRUNC)
        )
        if not writing:
            return self._open_read(local)
        if kind != "upload":
            raise asyncssh.SFTPPermissionDenied("results/ is read-only")
        if pflags & asyncssh.FXF_READ:
            raise asyncssh.SFTPPermissionDenied("Open uploads for writing only")
        if pflags & asyncssh.FXF_APPEND:
            raise asyncssh.SFTPOpUnsupported("Appending is not supported; upload the whole file")
        if pflags & asyncssh.FXF_EXCL and local.exists():
            raise asyncssh.SFTPFileAlreadyExists("File already exists")
        return self._open_upload(local)

    def _open_read(self, local: Path) -> _Download:
        try:
            fd = os.open(local, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            raise asyncssh.SFTPNoSuchFile("No such file") from None
        except OSError:
            raise asyncssh.SFTPPermissionDenied("Cannot read that file") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise asyncssh.SFTPNoSuchFile("No such file")
        return _Download(fd)

    def _open_upload(self, local: Path) -> _Upload:
        if not local.exists() and self._upload_count() >= MAX_UPLOAD_FILES:
            self._tell(f"Your folder holds {MAX_UPLOAD_FILES} files already; overwrite one of them instead")
        partial = self.root / PARTIAL_DIR
        partial.mkdir(mode=0o700, exist_ok=True)
        temp = partial / f"{local.name}.{secrets.token_hex(8)}.partial"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        replaced = local.stat(follow_symlinks=False).st_size if local.is_file() else 0
        upload = _Upload(
            name=local.name,
            final=local,
            temp=temp,
            fd=fd,
            district_id=self.login.district_id,
            base_usage=max(self.intake.disk_usage(self.login.district_id) - replaced, 0),
        )
        self.intake.inflight.setdefault(upload.district_id, {})[id(upload)] = 0
        return upload

    def _upload_count(self) -> int:
        with os.scandir(self.root) as entries:
            return sum(1 for e in entries if e.is_file(follow_symlinks=False) and UPLOAD_NAME.match(e.name))

    def read(self, file_obj: object, offset: int, size: int) -> bytes:
        self._touch()
        if not isinstance(file_obj, _Download):
            raise asyncssh.SFTPPermissionDenied("Uploads are write-only until closed")
        return os.pread(file_obj.fd, min(size, 256 * 1024), offset)

    def write(self, file_obj: object, offset: int, data: bytes) -> int:
        self._touch()
        if not isinstance(file_obj, _Upload):
            raise asyncssh.SFTPPermissionDenied("File not open for writing")
        upload = file_obj
        if upload.error:
            raise asyncssh.SFTPPermissionDenied(upload.error)
        end = offset + len(data)
        settings = self.intake.settings
        if end > settings.sftp_max_file_bytes:
            self._refuse_upload(
                upload, f"Upload refused: files are limited to {settings.sftp_max_file_bytes} bytes"
            )
        if end > upload.size:
            inflight = self.intake.inflight.setdefault(upload.district_id, {})
            others = sum(v for k, v in inflight.items() if k != id(upload))
            if upload.base_usage + others + end > settings.sftp_quota_bytes:
                self._refuse_upload(
                    upload,
                    f"Upload refused: the district's SFTP folder is limited to {settings.sftp_quota_bytes} "
                    "bytes; old uploads and results are removed after the retention period",
                )
            upload.size = end
            inflight[id(upload)] = end
        os.pwrite(upload.fd, data, offset)
        return len(data)

    def _tell(self, reason: str) -> NoReturn:
        """Refuses the request so that every client shows why. SFTP version 3 has no status code for
        size or quota, and OpenSSH's `sftp` prints only the code's own text ("Failure" for the generic
        one), never the server's message: the request fails as "Permission denied" and the message goes
        to the session's stderr, which OpenSSH prints on the user's terminal. Clients that show the
        status message (asyncssh, WinSCP, FileZilla) get it there."""
        with contextlib.suppress(OSError, asyncssh.Error):
            self.channel.write_stderr(f"roster-api: {reason}\n".encode())
        raise asyncssh.SFTPPermissionDenied(reason)

    def _refuse_upload(self, upload: _Upload, reason: str) -> NoReturn:
        self._abort(upload, reason)
        self._tell(reason)

    def _abort(self, upload: _Upload, reason: str) -> None:
        upload.error = reason
        self._release(upload)
        with contextlib.suppress(FileNotFoundError):
            upload.temp.unlink()
        log.warning(
            "sftp upload refused",
            extra={
                "fields": {
                    "event": "sftp.upload.refused",
                    "district_id": upload.district_id,
                    "file": upload.name,
                    "reason": reason,
                }
            },
        )

    def _release(self, upload: _Upload) -> None:
        if not upload.closed:
            upload.closed = True
            os.close(upload.fd)
        self.intake.inflight.get(upload.district_id, {}).pop(id(upload), None)

    def close(self, file_obj: object) -> Any:
        if isinstance(file_obj, _Download):
            os.close(file_obj.fd)
            return None
        if not isinstance(file_obj, _Upload):
            return None
        if not _called_by_client_close():
            if not file_obj.error:
                self._abort(file_obj, "session ended before the file was closed")
            return None
        return self._finish(file_obj)

    async def _finish(self, upload: _Upload) -> None:
        self._touch()
        if upload.error:
            raise asyncssh.SFTPPermissionDenied(upload.error)
        try:
            await asyncio.to_thread(os.fsync, upload.fd)
        finally:
            self._release(upload)
        try:
            await self.intake.accept_upload(upload, self.login)
        except asyncssh.SFTPError as exc:  # saved but not queued, or not saved: said on stderr too
            with contextlib.suppress(OSError, asyncssh.Error):
                self.channel.write_stderr(f"roster-api: {exc.reason}\n".encode())
            raise

    def fstat(self, file_obj: object) -> os.stat_result:
        self._touch()
        if isinstance(file_obj, _Upload | _Download) and not getattr(file_obj, "closed", False):
            return os.fstat(file_obj.fd)
        raise asyncssh.SFTPFailure("File is closed")

    def fsync(self, file_obj: object) -> None:
        if isinstance(file_obj, _Upload) and not file_obj.closed:
            os.fsync(file_obj.fd)

    # everything else is refused

    def _refuse(self) -> None:
        self._touch()
        raise asyncssh.SFTPPermissionDenied(
            "Not allowed: this server accepts <name>.csv uploads and lets you read them and results/"
        )

    @staticmethod
    def _times_only(attrs: asyncssh.SFTPAttrs) -> bool:
        """WinSCP and `put -p` set the file's times after an upload, and report an error to the user when
        that fails. Times are accepted and ignored (the server keeps its own); any change of mode,
        owner or size is refused."""
        changes = {k: v for k, v in vars(attrs).items() if v is not None and k not in {"type", "extended"}}
        return bool(changes) and set(changes) <= {"atime", "mtime", "atime_ns", "mtime_ns"}

    def setstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        if not self._times_only(attrs):
            self._refuse()
        self._stat(path)

    def lsetstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        self.setstat(path, attrs)

    def fsetstat(self, file_obj: object, attrs: asyncssh.SFTPAttrs) -> None:
        if not self._times_only(attrs):
            self._refuse()
        self._touch()

    def remove(self, path: bytes) -> None:
        self._refuse()

    def mkdir(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        self._refuse()

    def rmdir(self, path: bytes) -> None:
        self._refuse()

    def rename(self, oldpath: bytes, newpath: bytes) -> None:
        self._refuse()

    def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
        self._refuse()

    def symlink(self, oldpath: bytes, newpath: bytes) -> None:
        self._refuse()

    def link(self, oldpath: bytes, newpath: bytes) -> None:
        self._refuse()

    def readlink(self, path: bytes) -> bytes:
        self._refuse()
        raise AssertionError("unreachable")

    def statvfs(self, path: bytes) -> os.statvfs_result:
        raise asyncssh.SFTPOpUnsupported("statvfs is not supported")

    def fstatvfs(self, file_obj: object) -> os.statvfs_result:
        raise asyncssh.SFTPOpUnsupported("statvfs is not supported")

    def lock(self, file_obj: object, offset: int, length: int, flags: int) -> None:
        raise asyncssh.SFTPOpUnsupported("locking is not supported")

    def unlock(self, file_obj: object, offset: int, length: int) -> None:
        raise asyncssh.SFTPOpUnsupported("locking is not supported")

    def open56(self, path: bytes, desired_access: int, flags: int, attrs: asyncssh.SFTPAttrs) -> object:
        raise asyncssh.SFTPOpUnsupported("SFTP version 3 only")

    def exit(self) -> None:
        if self.denied is None:
            self.state.sftp_sessions -= 1
            self.intake.release_session(self.login.username)


# --- the server ---------------------------------------------------------------------------------


class SftpIntake:
    """`intake = SftpIntake(settings=...)`, `await intake.start()` (returns the bound port),
    `await intake.stop()`. The CLI's `roster-api sftp` runs one until SIGINT/SIGTERM."""

    def __init__(
        self,
        *,
        settings: Settings,
        engine: sa.Engine | None = None,
        enqueue: Enqueue | None = None,
        host: str | None = None,
        port: int | None = None,
    ) -> None:
        check_asyncssh_version()
        self.settings = settings
        self._own_engine = engine is None
        self.engine = engine or make_engine(settings.database_url, pool_size=5)
        self._enqueue = enqueue
        self.host = settings.sftp_host if host is None else host
        self.port = settings.sftp_port if port is None else port
        self.throttle = FailureThrottle(
            threshold=settings.sftp_lockout_failures, base_seconds=settings.sftp_lockout_seconds
        )
        self.connections: dict[asyncssh.SSHServerConnection, _ConnState] = {}
        self.sessions: dict[str, int] = {}
        self.inflight: dict[str, dict[int, int]] = {}
        self._district_locks: dict[str, asyncio.Lock] = {}
        # Each Argon2id check takes 64 MiB and a core for tens of ms: a flood of login attempts queues
        # here instead of exhausting memory.
        self.hashing = asyncio.Semaphore(ARGON2_CONCURRENCY)
        self._background: set[asyncio.Task[None]] = set()
        self._lockout_audits: list[float] = []
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._reaper: asyncio.Task[None] | None = None
        self.host_key_fingerprint = ""
        self.loose = LooseFiles(
            settings=settings,
            engine=self.engine,
            enqueue=lambda: self._enqueue or default_enqueue(),
            busy=lambda district_id: bool(self.inflight.get(district_id)),
            lock=lambda district_id: self._district_locks.setdefault(district_id, asyncio.Lock()),
        )
        self._loose_task: asyncio.Task[None] | None = None

    def district_dir(self, district_id: str) -> Path:
        path = district_sftp_dir(self.settings, district_id)
        (path / RESULTS_DIR).mkdir(parents=True, exist_ok=True, mode=0o700)
        return path

    def disk_usage(self, district_id: str) -> int:
        total = 0
        for dirpath, dirs, files in os.walk(district_sftp_dir(self.settings, district_id)):
            # uploads in progress are counted from `inflight`, not from their partial files
            dirs[:] = [d for d in dirs if d != PARTIAL_DIR]
            for name in files:
                with contextlib.suppress(FileNotFoundError):
                    total += os.stat(os.path.join(dirpath, name), follow_symlinks=False).st_size
        return total

    async def start(self) -> int:
        host_key = await asyncio.to_thread(load_or_create_host_key, self.settings)
        self.host_key_fingerprint = host_key.get_fingerprint("sha256")
        await asyncio.to_thread(self.sweep)
        self._acceptor = await asyncssh.create_server(
            lambda: _SSHServer(self),
            self.host,
            self.port,
            server_host_keys=[host_key],
            sftp_factory=self._sftp_factory,
            sftp_version=3,
            allow_scp=False,
            agent_forwarding=False,
            allow_pty=False,
            x11_forwarding=False,
            login_timeout=self.settings.sftp_login_timeout_seconds,
            keepalive_interval=30,
            keepalive_count_max=3,
            server_version="RosterSFTP",
            **algorithms(),
        )
        self.port = self._acceptor.sockets[0].getsockname()[1]
        self._reaper = asyncio.create_task(self._reap())
        self._loose_task = asyncio.create_task(self.loose.run())
        log.info(
            "sftp server listening",
            extra={
                "fields": {
                    "event": "sftp.start",
                    "host": self.host,
                    "port": self.port,
                    "host_key_fingerprint": self.host_key_fingerprint,
                }
            },
        )
        return self.port

    async def stop(self) -> None:
        if self._loose_task is not None:
            self._loose_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loose_task
            self._loose_task = None
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None
        if self._acceptor is not None:
            self._acceptor.close()
            await self._acceptor.wait_closed()
            self._acceptor = None
        for conn in list(self.connections):
            conn.close()
        await self.wait_recorded()
        if self._own_engine:
            self.engine.dispose()

    def _sftp_factory(self, chan: asyncssh.SSHServerChannel[bytes]) -> asyncssh.SFTPServer:
        state = next(s for s in self.connections.values() if s.conn is chan.get_connection())
        assert state.login is not None  # asyncssh opens no session before authentication
        username = state.login.username
        if self.sessions.get(username, 0) >= self.settings.sftp_max_sessions_per_user:
            log.warning(
                "sftp session refused: too many sessions",
                extra={"fields": {"event": "sftp.session.refused", "username": username}},
            )
            reason = "Too many SFTP sessions for this login at once; close one and retry"
            return DistrictSFTPServer(chan, self, state, denied=reason)
        self.sessions[username] = self.sessions.get(username, 0) + 1
        state.sftp_sessions += 1
        return DistrictSFTPServer(chan, self, state)

    def lockout(self, username: str, address: str, seconds: float, *, scope: str) -> None:
        """A pause starts: logged, and written to the district's login history (at most
        LOCKOUT_AUDITS_PER_MINUTE a minute, so a spray cannot flood the database)."""
        log.warning(
            "sftp password logins paused",
            extra={
                "fields": {
                    "event": "sftp.auth.lockout",
                    "username": _safe(username),
                    "address": address,
                    "scope": scope,
                    "seconds": round(seconds, 1),
                }
            },
        )
        now = time.monotonic()
        self._lockout_audits = [t for t in self._lockout_audits if now - t < 60]
        if len(self._lockout_audits) >= LOCKOUT_AUDITS_PER_MINUTE:
            return
        self._lockout_audits.append(now)
        details = {"address": address, "scope": scope, "seconds": round(seconds, 1), "method": "password"}
        self.record_login_event(LOGIN_LOCKOUT, username, details)

    def record_login_event(self, action: str, username: str, details: dict[str, Any]) -> None:
        """Writes the event in the background; a database error is logged, never fails the login."""

        def write() -> None:
            try:
                record_login_event(engine=self.engine, username=username, action=action, details=details)
            except sa.exc.SQLAlchemyError as exc:
                log.warning(
                    "sftp login event not recorded",
                    extra={"fields": {"event": "sftp.audit_failed", "error": type(exc).__name__}},
                )

        task = asyncio.create_task(asyncio.to_thread(write))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def wait_recorded(self) -> None:
        """Returns once the login events written so far are in the database."""
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    def release_session(self, username: str) -> None:
        left = self.sessions.get(username, 0) - 1
        if left > 0:
            self.sessions[username] = left
        else:
            self.sessions.pop(username, None)

    async def _reap(self) -> None:
        """Closes idle connections, and those whose login was revoked since they connected."""
        interval = min(5.0, self.settings.sftp_idle_timeout_seconds / 3)
        last_revocation_check = last_sweep = time.monotonic()
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for state in list(self.connections.values()):
                if (
                    state.login is not None
                    and now - state.last_activity > self.settings.sftp_idle_timeout_seconds
                ):
                    log.info(
                        "sftp connection closed: idle",
                        extra={"fields": {"event": "sftp.idle", "username": state.login.username}},
                    )
                    state.conn.close()
            if now - last_revocation_check >= 30:
                last_revocation_check = now
                with contextlib.suppress(sa.exc.SQLAlchemyError):
                    await self._close_revoked()
            if now - last_sweep >= RETENTION_SWEEP_SECONDS:
                last_sweep = now
                await asyncio.to_thread(self.sweep)

    async def _close_revoked(self) -> None:
        ids = {s.login.credential_id for s in self.connections.values() if s.login is not None}
        if not ids:
            return

        def revoked() -> set[str]:
            with Session(self.engine) as session:
                query = select(SftpCredential.id).where(
                    col(SftpCredential.id).in_(ids), col(SftpCredential.revoked_at).is_not(None)
                )
                return set(session.exec(query).all())

        gone = await asyncio.to_thread(revoked)
        for state in list(self.connections.values()):
            if state.login is not None and state.login.credential_id in gone:
                state.conn.close()

    def sweep(self) -> None:
        """Retention, also when no nightly job runs: uploads and results past the retention period, and
        partial files of uploads cut off by a crash."""
        base = self.settings.data_dir / "sftp"
        if not base.is_dir():
            return
        try:
            self._remove_stale_partials()
            for folder in base.iterdir():
                if folder.is_dir() and not folder.is_symlink():
                    remove_expired(settings=self.settings, district_id=folder.name)
        except OSError as exc:  # retention must never stop the server
            log.warning("sftp retention sweep failed", extra={"fields": {"error": type(exc).__name__}})

    def _remove_stale_partials(self) -> None:
        """Uploads cut off by a crash of this process. Several servers may share the folder, so only
        files no one has written to for a day go."""
        base = self.settings.data_dir / "sftp"
        if not base.is_dir():
            return
        cutoff = time.time() - STALE_PARTIAL_SECONDS
        for partial in base.glob(f"*/{PARTIAL_DIR}/*.partial"):
            with contextlib.suppress(FileNotFoundError):
                if partial.lstat().st_mtime < cutoff:
                    partial.unlink()

    async def accept_upload(self, upload: _Upload, login: SftpLogin) -> None:
        """The client closed a complete upload: queue it (when the district imports on upload), then move
        it to its final name. Both under a per-district lock, so the file left in the folder is always
        the one imported last."""
        lock = self._district_locks.setdefault(login.district_id, asyncio.Lock())
        digest = await asyncio.to_thread(_sha256, upload.temp)
        # One of Clever's loose files waits for the rest of the set (loose_files.py), never imported alone.
        loose = await asyncio.to_thread(is_clever_file, upload.name, upload.temp)
        import_id: str | None = None
        failure: str | None = None
        async with lock:
            try:
                if not loose:
                    import_id = await asyncio.to_thread(self._enqueue_if_wanted, upload, login)
            except RosterError as exc:
                failure = exc.message
            except Exception:  # the file is kept either way; the district is told it was not queued
                log.exception(
                    "sftp upload could not be queued",
                    extra={"fields": {"event": "sftp.upload.queue_failed", "district_id": login.district_id}},
                )
                failure = "the import service is unavailable"
            try:
                os.replace(upload.temp, upload.final)
            except OSError as exc:
                with contextlib.suppress(FileNotFoundError):
                    upload.temp.unlink()
                log.error(
                    "sftp upload could not be saved",
                    extra={"fields": {"event": "sftp.upload.save_failed", "error": type(exc).__name__}},
                )
                raise asyncssh.SFTPFailure(f"{upload.name} could not be saved; upload it again") from None
            if loose:
                self.loose.touched(login.district_id, login.username)
        log.info(
            "sftp upload received",
            extra={
                "fields": {
                    "event": "sftp.upload",
                    "district_id": login.district_id,
                    "username": login.username,
                    "file": upload.name,
                    "size": upload.size,
                    "sha256": digest,
                    "import_id": import_id,
                }
            },
        )
        if failure is not None:
            raise asyncssh.SFTPFailure(
                f"{upload.name} was saved but not queued for import: {failure}. "
                "The nightly sync will pick it up, or upload it again."
            )

    def _enqueue_if_wanted(self, upload: _Upload, login: SftpLogin) -> str | None:
        with Session(self.engine) as session:
            district = session.get(District, login.district_id)
            preview = is_preview(upload.name)  # checked only, even when imports on upload are off
            wanted = district is not None and (district.import_on_upload or preview)
        if not wanted:
            return None
        enqueue = self._enqueue or default_enqueue()
        run = enqueue(
            engine=self.engine,
            settings=self.settings,
            district_id=login.district_id,
            source="sftp",
            src_path=upload.temp,
            filename=upload.name,
            created_by=f"sftp:{login.username}",
            dry_run=preview,
        )
        run_id = getattr(run, "id", None)
        return str(run_id) if run_id is not None else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


async def serve(settings: Settings) -> None:
    """Runs the SFTP server until cancelled (SIGINT/SIGTERM in `roster-api sftp`)."""
    intake = SftpIntake(settings=settings)
    await intake.start()
    try:
        await asyncio.Event().wait()
    finally:
        await intake.stop()
