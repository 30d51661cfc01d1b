"""SFTP credentials: one active login per district, a generated password stored as Argon2id and/or
OpenSSH public keys. The password is returned once, at creation or rotation, and never stored in clear."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import argon2
import asyncssh
import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from roster_api import audit
from roster_api.auth import new_id
from roster_api.errors import Conflict, Invalid, NotFound
from roster_api.models import AuditEvent, District, SftpCredential, utcnow
from roster_shared.errors import ErrorCode

MAX_PUBLIC_KEYS = 10
# rsa-sha2 signatures only (the server offers no ssh-rsa/SHA-1 signature algorithm); DSA is refused.
ALLOWED_KEY_ALGORITHMS = {
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
}
MIN_RSA_BITS = 3072
# The login history: audit events written by the SFTP server (actor "sftp").
LOGIN_SUCCESS = "sftp_login.success"
LOGIN_LOCKOUT = "sftp_login.lockout"
LOGIN_EVENTS = (LOGIN_SUCCESS, LOGIN_LOCKOUT)


@lru_cache(maxsize=1)
def _hasher() -> argon2.PasswordHasher:
    # argon2-cffi's defaults are Argon2id with RFC 9106's low-memory profile (t=3, m=64 MiB, p=4).
    return argon2.PasswordHasher()


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    # Verified against when the username is unknown, so both answers take the same time.
    return _hasher().hash(secrets.token_urlsafe(24))


@dataclass(frozen=True)
class SftpLogin:
    district_id: str
    credential_id: str
    username: str


def generate_password() -> str:
    # 144 bits, 24 characters of [A-Za-z0-9_-]: easy to paste into WinSCP or FileZilla.
    return secrets.token_urlsafe(18)


def _new_username(district_id: str) -> str:
    # A random suffix: a revoked username is never reused, and usernames are not guessable from slugs.
    return f"{district_id[:50]}-{secrets.token_hex(4)}"


def parse_public_key(text: str) -> asyncssh.SSHKey:
    text = text.strip()
    if "\n" in text or "\r" in text:
        raise Invalid("Give one public key per entry, on one line.", field="public_key")
    try:
        key = asyncssh.import_public_key(text)
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise Invalid(
            "Not an OpenSSH public key; paste the line from the .pub file (e.g. `ssh-ed25519 AAAA...`).",
            field="public_key",
        ) from exc
    algorithm = key.get_algorithm()
    if algorithm not in ALLOWED_KEY_ALGORITHMS:
        raise Invalid(
            f"Key type {algorithm!r} is not accepted; use ssh-ed25519 (or ECDSA, or RSA of "
            f"{MIN_RSA_BITS}+ bits).",
            field="public_key",
        )
    if algorithm == "ssh-rsa":
        bits = int(getattr(getattr(key, "pyca_key", None), "key_size", 0))
        if bits < MIN_RSA_BITS:
            raise Invalid(
                f"RSA keys need at least {MIN_RSA_BITS} bits; this one has {bits}.", field="public_key"
            )
    key.set_comment(None)  # comments are often e-mail addresses: not stored
    return key


def key_fingerprint(stored: str) -> tuple[str, str]:
    key = asyncssh.import_public_key(stored)
    return key.get_algorithm(), key.get_fingerprint("sha256")


def _normalized(key: asyncssh.SSHKey) -> str:
    return key.export_public_key("openssh").decode().strip()


def _active(*, session: Session, district_id: str) -> SftpCredential | None:
    query = select(SftpCredential).where(
        SftpCredential.district_id == district_id, col(SftpCredential.revoked_at).is_(None)
    )
    return session.exec(query).first()


def create_credential(
    *, session: Session, district: District, password: bool, public_keys: list[str], actor: str
) -> tuple[SftpCredential, str | None]:
    if not password and not public_keys:
        raise Invalid("Ask for a password, give at least one public key, or both.", field="password")
    keys = [_normalized(parse_public_key(text)) for text in public_keys]
    if _active(session=session, district_id=district.id) is not None:
        raise Conflict(
            f"District {district.id!r} already has an active SFTP login; rotate its password, add a key "
            "or revoke it first.",
            code=ErrorCode.CONFLICT,
        )
    raw = generate_password() if password else None
    credential = SftpCredential(
        id=new_id("sftp_", 8),
        district_id=district.id,
        username=_new_username(district.id),
        password_hash=_hasher().hash(raw) if raw else None,
        public_keys=list(dict.fromkeys(keys)),
    )
    session.add(credential)
    try:
        session.flush()
    except sa.exc.IntegrityError as exc:
        raise Conflict("A concurrent request created an SFTP login; try again.") from exc
    audit.record(
        session=session,
        actor=actor,
        action="sftp_credential.create",
        district_id=district.id,
        target=credential.id,
        details={"username": credential.username, "password": bool(raw), "public_keys": len(keys)},
    )
    return credential, raw


def list_credentials(*, session: Session, district_id: str) -> list[SftpCredential]:
    query = (
        select(SftpCredential)
        .where(SftpCredential.district_id == district_id)
        .order_by(col(SftpCredential.created_at).desc(), col(SftpCredential.id))
    )
    return list(session.exec(query).all())


def get_credential(*, session: Session, district_id: str, credential_id: str) -> SftpCredential:
    credential = session.get(SftpCredential, credential_id)
    if credential is None or credential.district_id != district_id:
        raise NotFound(
            f"SFTP login {credential_id!r} was not found in district {district_id!r}.",
            code=ErrorCode.SFTP_CREDENTIAL_NOT_FOUND,
        )
    return credential


def _live(*, session: Session, district_id: str, credential_id: str) -> SftpCredential:
    credential = get_credential(session=session, district_id=district_id, credential_id=credential_id)
    if credential.revoked_at is not None:
        raise Conflict(f"SFTP login {credential_id!r} was revoked; create a new one.")
    return credential


def rotate_password(
    *, session: Session, district_id: str, credential_id: str, actor: str
) -> tuple[SftpCredential, str]:
    credential = _live(session=session, district_id=district_id, credential_id=credential_id)
    raw = generate_password()
    credential.password_hash = _hasher().hash(raw)
    credential.rotated_at = utcnow()
    session.add(credential)
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="sftp_credential.rotate",
        district_id=district_id,
        target=credential.id,
    )
    return credential, raw


def add_public_key(
    *, session: Session, district_id: str, credential_id: str, public_key: str, actor: str
) -> SftpCredential:
    credential = _live(session=session, district_id=district_id, credential_id=credential_id)
    key = parse_public_key(public_key)
    normalized = _normalized(key)
    if normalized not in credential.public_keys:
        if len(credential.public_keys) >= MAX_PUBLIC_KEYS:
            raise Invalid(f"An SFTP login holds at most {MAX_PUBLIC_KEYS} keys.", field="public_key")
        credential.public_keys = [*credential.public_keys, normalized]
        session.add(credential)
        session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="sftp_credential.add_key",
        district_id=district_id,
        target=credential.id,
        details={"fingerprint": key.get_fingerprint("sha256")},
    )
    return credential


def remove_public_key(
    *, session: Session, district_id: str, credential_id: str, fingerprint: str, actor: str
) -> SftpCredential:
    credential = _live(session=session, district_id=district_id, credential_id=credential_id)
    kept = [k for k in credential.public_keys if key_fingerprint(k)[1] != fingerprint]
    if len(kept) == len(credential.public_keys):
        raise NotFound(
            f"SFTP login {credential_id!r} has no key with fingerprint {fingerprint!r}.",
            code=ErrorCode.SFTP_CREDENTIAL_NOT_FOUND,
        )
    credential.public_keys = kept
    session.add(credential)
    session.flush()
    audit.record(
        session=session,
        actor=actor,
        action="sftp_credential.remove_key",
        district_id=district_id,
        target=credential.id,
        details={"fingerprint": fingerprint},
    )
    return credential


def revoke(*, session: Session, district_id: str, credential_id: str, actor: str) -> SftpCredential:
    credential = get_credential(session=session, district_id=district_id, credential_id=credential_id)
    if credential.revoked_at is None:
        credential.revoked_at = utcnow()
        session.add(credential)
        session.flush()
        audit.record(
            session=session,
            actor=actor,
            action="sftp_credential.revoke",
            district_id=district_id,
            target=credential.id,
        )
    return credential


# --- used by the SFTP server -------------------------------------------------------------------


def _login_for(*, engine: sa.Engine, username: str) -> tuple[SftpLogin, str | None, list[str]] | None:
    with Session(engine) as session:
        query = select(SftpCredential).where(
            SftpCredential.username == username, col(SftpCredential.revoked_at).is_(None)
        )
        credential = session.exec(query).first()
        if credential is None:
            return None
        login = SftpLogin(credential.district_id, credential.id, credential.username)
        return login, credential.password_hash, list(credential.public_keys)


def verify_password(*, engine: sa.Engine, username: str, password: str) -> SftpLogin | None:
    """Blocking (Argon2 takes tens of milliseconds): call it from a thread."""
    found = _login_for(engine=engine, username=username) if len(username) <= 64 else None
    stored = found[1] if found is not None and found[1] else _dummy_hash()
    try:
        _hasher().verify(stored, password)
    except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
        return None
    if found is None or not found[1]:
        return None
    return found[0]


def login_for_public_key(*, engine: sa.Engine, username: str, key: asyncssh.SSHKey) -> SftpLogin | None:
    """The login if `key` is one of its keys. asyncssh then checks the client's signature."""
    found = _login_for(engine=engine, username=username) if len(username) <= 64 else None
    if found is None:
        return None
    offered = _normalized(key)
    return found[0] if any(offered == stored for stored in found[2]) else None


def record_login_event(*, engine: sa.Engine, username: str, action: str, details: dict[str, Any]) -> bool:
    """Adds a login-history event to the district the username belongs to (revoked logins included, so
    an attack on an old username shows too). An unknown username records nothing: returns False."""
    if len(username) > 64:
        return False
    with Session(engine) as session:
        query = select(SftpCredential).where(SftpCredential.username == username)
        credential = session.exec(query).first()
        if credential is None:
            return False
        audit.record(
            session=session,
            actor="sftp",
            action=action,
            district_id=credential.district_id,
            target=credential.id,
            details={"username": username, **details},
        )
        session.commit()
    return True


def list_login_events(
    *, session: Session, district_id: str, limit: int, offset: int
) -> tuple[int, list[AuditEvent]]:
    """The district's SFTP login history, newest first: successful logins and lockouts."""
    conditions = (AuditEvent.district_id == district_id, col(AuditEvent.action).in_(LOGIN_EVENTS))
    total = session.exec(select(func.count()).select_from(AuditEvent).where(*conditions)).one()
    rows = session.exec(
        select(AuditEvent)
        .where(*conditions)
        .order_by(col(AuditEvent.created_at).desc(), col(AuditEvent.id).desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return total, list(rows)
