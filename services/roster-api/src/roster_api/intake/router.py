from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from sqlmodel import col, func, select

from roster_api.deps import AdminDep, AdminDistrictDep, ReadDistrictDep, SessionDep, SettingsDep
from roster_api.errors import responses
from roster_api.intake import credentials as service
from roster_api.intake.hostkey import HostKeyInfo, host_key_info
from roster_api.intake.schemas import (
    HostKeyPublic,
    NightlyRunPublic,
    PublicKeyAdd,
    PublicKeyPublic,
    SftpConnection,
    SftpCredentialCreate,
    SftpCredentialPublic,
    SftpCredentialSecret,
    SftpLoginEventPublic,
)
from roster_api.models import AuditEvent, NightlyRun, SftpCredential
from roster_api.pagination import Page, PageDep
from roster_api.settings import Settings

router = APIRouter(prefix="/v1/districts/{district_id}/sftp-credentials", tags=["sftp"])
nightly_router = APIRouter(prefix="/v1/districts/{district_id}/nightly-runs", tags=["sftp"])
host_key_router = APIRouter(prefix="/v1/sftp", tags=["sftp"])


def _public(credential: SftpCredential, settings: Settings, host_key: HostKeyInfo) -> SftpCredentialPublic:
    keys = [
        PublicKeyPublic(algorithm=a, fingerprint=f)
        for a, f in map(service.key_fingerprint, credential.public_keys)
    ]
    return SftpCredentialPublic(
        id=credential.id,
        district_id=credential.district_id,
        username=credential.username,
        has_password=credential.password_hash is not None,
        public_keys=keys,
        created_at=credential.created_at,
        rotated_at=credential.rotated_at,
        revoked_at=credential.revoked_at,
        connection=SftpConnection(
            host=settings.sftp_public_host, port=settings.sftp_port, host_key_fingerprint=host_key.fingerprint
        ),
    )


def _secret(
    credential: SftpCredential, password: str | None, settings: Settings, host_key: HostKeyInfo
) -> SftpCredentialSecret:
    return SftpCredentialSecret(**_public(credential, settings, host_key).model_dump(), password=password)


@router.post("", status_code=status.HTTP_201_CREATED, responses=responses(404, 409))
def create_sftp_credential(
    data: SftpCredentialCreate,
    district: AdminDistrictDep,
    session: SessionDep,
    settings: SettingsDep,
    principal: AdminDep,
) -> SftpCredentialSecret:
    """Create the district's SFTP login. The generated password is in this response only."""
    credential, password = service.create_credential(
        session=session,
        district=district,
        password=data.password,
        public_keys=data.public_keys,
        actor=principal.name,
    )
    return _secret(credential, password, settings, host_key_info(settings))


@router.get("", responses=responses(404))
def list_sftp_credentials(
    district: AdminDistrictDep, session: SessionDep, settings: SettingsDep
) -> Page[SftpCredentialPublic]:
    """The district's SFTP logins, revoked ones included, newest first. Never the password."""
    host_key = host_key_info(settings)
    rows = service.list_credentials(session=session, district_id=district.id)
    items = [_public(c, settings, host_key) for c in rows]
    return Page(items=items, total=len(items), limit=max(len(items), 1), offset=0)


def _login_event(event: AuditEvent) -> SftpLoginEventPublic:
    details = event.details
    return SftpLoginEventPublic(
        created_at=event.created_at,
        event="lockout" if event.action == service.LOGIN_LOCKOUT else "login",
        credential_id=event.target,
        username=str(details.get("username", "")),
        address=str(details.get("address", "")),
        method=str(details.get("method", "")),
        scope=details.get("scope"),
        seconds=details.get("seconds"),
    )


# Declared before `/{credential_id}` so that the path is not read as a credential id.
@router.get("/login-history", responses=responses(404))
def list_sftp_login_history(
    district: AdminDistrictDep, session: SessionDep, page: PageDep
) -> Page[SftpLoginEventPublic]:
    """The district's SFTP logins and lockouts, newest first: when, which username, from which address,
    how (password or key), and for a lockout how long password logins from there pause."""
    total, rows = service.list_login_events(
        session=session, district_id=district.id, limit=page.limit, offset=page.offset
    )
    return Page(items=[_login_event(r) for r in rows], total=total, limit=page.limit, offset=page.offset)


@router.get("/{credential_id}", responses=responses(404))
def get_sftp_credential(
    credential_id: str, district: AdminDistrictDep, session: SessionDep, settings: SettingsDep
) -> SftpCredentialPublic:
    credential = service.get_credential(session=session, district_id=district.id, credential_id=credential_id)
    return _public(credential, settings, host_key_info(settings))


@router.post("/{credential_id}/rotate", responses=responses(404, 409))
def rotate_sftp_password(
    credential_id: str,
    district: AdminDistrictDep,
    session: SessionDep,
    settings: SettingsDep,
    principal: AdminDep,
) -> SftpCredentialSecret:
    """Replace the password with a new generated one (shown once). The old one stops working at once."""
    credential, password = service.rotate_password(
        session=session, district_id=district.id, credential_id=credential_id, actor=principal.name
    )
    return _secret(credential, password, settings, host_key_info(settings))


@router.post(
    "/{credential_id}/public-keys", status_code=status.HTTP_201_CREATED, responses=responses(404, 409)
)
def add_sftp_public_key(
    credential_id: str,
    data: PublicKeyAdd,
    district: AdminDistrictDep,
    session: SessionDep,
    settings: SettingsDep,
    principal: AdminDep,
) -> SftpCredentialPublic:
    credential = service.add_public_key(
        session=session,
        district_id=district.id,
        credential_id=credential_id,
        public_key=data.public_key,
        actor=principal.name,
    )
    return _public(credential, settings, host_key_info(settings))


@router.delete("/{credential_id}/public-keys", responses=responses(404, 409))
def remove_sftp_public_key(
    credential_id: str,
    fingerprint: Annotated[str, Query(min_length=8, max_length=100, description="e.g. SHA256:abc...")],
    district: AdminDistrictDep,
    session: SessionDep,
    settings: SettingsDep,
    principal: AdminDep,
) -> SftpCredentialPublic:
    credential = service.remove_public_key(
        session=session,
        district_id=district.id,
        credential_id=credential_id,
        fingerprint=fingerprint,
        actor=principal.name,
    )
    return _public(credential, settings, host_key_info(settings))


@router.delete("/{credential_id}", status_code=status.HTTP_204_NO_CONTENT, responses=responses(404))
def revoke_sftp_credential(
    credential_id: str, district: AdminDistrictDep, session: SessionDep, principal: AdminDep
) -> Response:
    """Revoke the login: new connections are refused at once (open sessions end within a minute)."""
    service.revoke(
        session=session, district_id=district.id, credential_id=credential_id, actor=principal.name
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@host_key_router.get("/host-key", responses=responses())
def get_sftp_host_key(settings: SettingsDep, principal: AdminDep) -> HostKeyPublic:
    """The SFTP server's host key and fingerprint, to hand to districts out of band."""
    info = host_key_info(settings)
    host = settings.sftp_public_host
    target = host if settings.sftp_port == 22 else f"[{host}]:{settings.sftp_port}"
    return HostKeyPublic(
        algorithm=info.algorithm,
        fingerprint=info.fingerprint,
        public_key=info.public_key,
        host=host,
        port=settings.sftp_port,
        known_hosts_line=f"{target} {info.public_key}",
    )


@nightly_router.get("", responses=responses(404))
def list_nightly_runs(
    district: ReadDistrictDep, session: SessionDep, page: PageDep
) -> Page[NightlyRunPublic]:
    """The district's nightly re-syncs, newest night first: what each night did, and the import."""
    base = select(NightlyRun).where(NightlyRun.district_id == district.id)
    total = session.exec(select(func.count()).select_from(base.subquery())).one()
    rows = session.exec(
        base.order_by(col(NightlyRun.run_date).desc()).limit(page.limit).offset(page.offset)
    ).all()
    items = [NightlyRunPublic.model_validate(row, from_attributes=True) for row in rows]
    return Page(items=items, total=total, limit=page.limit, offset=page.offset)
