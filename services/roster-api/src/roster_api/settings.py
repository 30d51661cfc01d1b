from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class Settings(BaseSettings):
    """Every setting is an environment variable `ROSTER_<NAME>`; deploy/README.md lists them all."""

    model_config = SettingsConfigDict(env_prefix="ROSTER_", extra="ignore")

    environment: Environment = Environment.DEVELOPMENT
    database_url: str = "sqlite:///./var/roster.db"
    db_pool_size: int = Field(default=10, ge=1, le=200)
    data_dir: Path = Path("./var")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    log_level: str = "INFO"
    max_upload_bytes: int = Field(default=1024**3, ge=1)
    upload_retention_days: int = Field(default=30, ge=0)
    run_worker: bool = True
    run_scheduler: bool = True
    worker_poll_seconds: float = Field(default=1.0, gt=0)
    import_lease_seconds: int = Field(default=600, ge=10)
    sftp_host: str = "127.0.0.1"
    sftp_port: int = Field(default=2222, ge=0, le=65535)
    sftp_max_file_bytes: int = Field(default=1024**3, ge=1)
    sftp_quota_bytes: int = Field(default=5 * 1024**3, ge=1)
    # The "roster-api" hostname given to districts in the sftp command; only used in messages.
    sftp_public_host: str = "localhost"
    # Pepper mixed into hashes of identifiers kept for correlation (e.g. emails of failed logins).
    hash_pepper: SecretStr = SecretStr("development-pepper")
    # --- SFTP intake and nightly sync ---
    # Host key file (ed25519, OpenSSH format), created on first start.
    # Default: <data_dir>/ssh_host_ed25519_key.
    sftp_host_key_path: Path | None = None
    sftp_login_timeout_seconds: float = Field(default=30.0, gt=0)
    sftp_idle_timeout_seconds: float = Field(default=600.0, gt=0)
    sftp_max_sessions_per_user: int = Field(default=4, ge=1)
    # Clever's loose files (schools.csv, students.csv, ...) are imported as one package once the set is
    # complete and none of them has changed for this many seconds (docs/roster-formats.md).
    sftp_loose_quiet_seconds: float = Field(default=60.0, gt=0)
    # Failed logins on one connection before it is closed.
    sftp_max_auth_failures: int = Field(default=3, ge=1)
    # Wrong passwords per (username, address) within 15 minutes before password logins from that address
    # pause (an address may spend twice as many across usernames); the pause starts at
    # sftp_lockout_seconds and doubles with each further failure after it (at most 1 hour). Key logins
    # never pause.
    sftp_lockout_failures: int = Field(default=10, ge=1)
    sftp_lockout_seconds: float = Field(default=30.0, gt=0)
    # A district whose nightly time was missed (process down) is still synced within this many hours.
    nightly_catchup_hours: int = Field(default=6, ge=0, le=23)
    nightly_poll_seconds: float = Field(default=60.0, gt=0)
    # --- resolve and login diagnostics ---
    # PostgreSQL only: resolve runs on its own async psycopg pool (prepared statements), not the engine.
    resolve_pool_min: int = Field(default=2, ge=1, le=200)
    resolve_pool_max: int = Field(default=10, ge=1, le=200)
    # Per API key and process; 0 turns the limit off. A district's morning rush is a few hundred/s.
    resolve_rate_per_second: float = Field(default=1000.0, ge=0)
    resolve_rate_burst: int = Field(default=2000, ge=1)
    # --- result notices: email and webhook after an import's outcome ---
    # smtp://host:port (STARTTLS when the server offers it; `?starttls=1` insists on it) or
    # smtps://host:port (TLS from the first byte); `user:password@` logs in. Empty: no email is sent.
    smtp_url: SecretStr = SecretStr("")
    # The sender of notice emails.
    smtp_from: str = Field(default="roster-api@localhost", max_length=320)
    # PEM file of the CA that signed the SMTP server's certificate (a private relay); default: system CAs.
    smtp_ca_file: Path | None = None
    # Time allowed for each SMTP connection, command and webhook request (seconds).
    notice_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    # Attempts per notice and recipient before it is logged as undelivered.
    notice_max_attempts: int = Field(default=5, ge=1, le=20)
    # Pause before the second attempt; it doubles for each further attempt (at most 1 hour).
    notice_backoff_seconds: float = Field(default=30.0, ge=0, le=3600)
    # --- district console: "Log in with Clever" through the sso-gateway (an OIDC client of it) ---
    # The gateway's SSO_ISSUER. With the three below set, the console's sign-in page shows the button.
    console_oidc_issuer: str = ""
    # the gateway client flagged `console` (in one product's SSO_<PRODUCT>__CLIENTS)
    console_oidc_client_id: str = ""
    # that client's client_secret
    console_oidc_client_secret: SecretStr = SecretStr("")
    # registered at that client: https://<roster-api>/console/auth/callback
    console_oidc_redirect_uri: str = ""

    @property
    def console_oidc_enabled(self) -> bool:
        return bool(
            self.console_oidc_issuer
            and self.console_oidc_client_id
            and self.console_oidc_client_secret.get_secret_value()
            and self.console_oidc_redirect_uri
        )

    @field_validator("database_url")
    @classmethod
    def _driver(cls, value: str) -> str:
        # psycopg 3 is the PostgreSQL driver; accept the plain scheme as a convenience.
        if value.startswith("postgresql://"):
            return "postgresql+psycopg://" + value.removeprefix("postgresql://")
        if value.startswith("postgres://"):
            return "postgresql+psycopg://" + value.removeprefix("postgres://")
        return value

    def model_post_init(self, __context: object) -> None:
        if self.environment is Environment.PRODUCTION and self.hash_pepper.get_secret_value() in {
            "development-pepper",
            "",
            "change-me",
        }:
            raise ValueError("ROSTER_HASH_PEPPER must be set to a secret value in production")

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    return Settings()
