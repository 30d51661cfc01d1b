from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field


class SftpCredentialCreate(BaseModel):
    """A password is generated unless `password` is false; public keys may be given instead or too."""

    model_config = ConfigDict(extra="forbid")

    password: bool = True
    public_keys: list[str] = Field(
        default_factory=list,
        max_length=10,
        description="OpenSSH public keys, e.g. `ssh-ed25519 AAAAC3Nza... it@district.org`",
    )


class PublicKeyAdd(BaseModel):
    model_config = ConfigDict(extra="forbid")

    public_key: str = Field(min_length=1, max_length=16_384)


class PublicKeyPublic(BaseModel):
    algorithm: str
    fingerprint: str


class SftpConnection(BaseModel):
    host: str
    port: int
    host_key_fingerprint: str


class SftpCredentialPublic(BaseModel):
    id: str
    district_id: str
    username: str
    has_password: bool
    public_keys: list[PublicKeyPublic]
    created_at: datetime
    rotated_at: datetime | None
    revoked_at: datetime | None
    connection: SftpConnection


class SftpCredentialSecret(SftpCredentialPublic):
    password: str | None = Field(description="Shown only in this response; store it in a password manager.")


class HostKeyPublic(BaseModel):
    algorithm: str
    fingerprint: str
    public_key: str
    host: str
    port: int
    known_hosts_line: str = Field(description="A line for the district's ~/.ssh/known_hosts")


class NightlyRunPublic(BaseModel):
    district_id: str
    run_date: str = Field(description="The district's local date of the night")
    outcome: str = Field(description="started | queued | skipped | pending | no_file | failed")
    import_id: str | None = Field(description="The import queued, or the applied one it matched (skipped)")
    created_at: datetime


class SftpLoginEventPublic(BaseModel):
    created_at: datetime
    event: str = Field(description="login | lockout")
    credential_id: str | None
    username: str
    address: str = Field(description="The client's IP address")
    method: str = Field(description="password | publickey")
    scope: str | None = Field(
        default=None,
        description="lockout only: `username and address`, or `address` (its budget across usernames)",
    )
    seconds: float | None = Field(default=None, description="lockout only: how long password logins pause")
