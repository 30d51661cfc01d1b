"""Every setting is an environment variable `SSO_<NAME>`; per-product ones are nested with `__`, e.g.
`SSO_ROCKETLIT__CLEVER_CLIENT_ID`. README "sso-gateway" lists them all. Validated at start-up: a gateway
that would misbehave refuses to start and says which variable is wrong."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from roster_shared.contracts import Product

PLACEHOLDER_SECRETS = {"", "change-me", "changeme", "secret", "dev", "development", "dev-secret"}
CALLBACK_PATH = "/callback/clever/{product}"


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class OidcClient(BaseModel):
    """One frontend of a product, as an OpenID Connect client of the gateway."""

    client_id: str = Field(min_length=1, max_length=100)
    # None: a public client (SPA, mobile), which must use PKCE S256.
    client_secret: SecretStr | None = None
    redirect_uris: list[str] = Field(min_length=1)
    post_logout_redirect_uris: list[str] = Field(default_factory=list)
    # OIDC third-party-initiated login: where a Clever-initiated login (portal icon, Instant Login) ends,
    # so the frontend starts its normal flow. `?iss=<issuer>` is appended.
    login_initiation_uri: str | None = None
    # confidential clients may also be made to use PKCE
    require_pkce: bool = False
    # the district console (roster-api's /console): logs in Clever district admins (and staff where the
    # district allows it) through roster-api's console resolve; its ID token's `sub` is `clever:<user id>`
    console: bool = False

    @property
    def is_public(self) -> bool:
        return self.client_secret is None


class ProductSettings(BaseModel):
    display_name: str = Field(min_length=1, max_length=60)
    clever_client_id: str = Field(min_length=1)
    clever_client_secret: SecretStr
    # the gateway's callback for this product, registered FIRST at Clever (portal logins use the first)
    clever_redirect_uri: str
    clients: list[OidcClient] = Field(min_length=1)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SSO_", env_nested_delimiter="__", extra="ignore")

    environment: Environment = Environment.DEVELOPMENT
    issuer: str = "http://127.0.0.1:8100"
    host: str = "127.0.0.1"
    port: int = Field(default=8100, ge=0, le=65535)
    data_dir: Path = Path("./var")
    log_level: str = "INFO"

    clever_authorize_url: str = "https://clever.com/oauth/authorize"
    clever_token_url: str = "https://clever.com/oauth/tokens"  # noqa: S105 (a URL, not a secret)
    clever_api_url: str = "https://api.clever.com"
    clever_timeout_seconds: float = Field(default=5.0, gt=0, le=60)

    roster_api_url: str = "http://127.0.0.1:8000"
    roster_api_key: SecretStr = SecretStr("")
    roster_api_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    # "lean" (roster_shared.transport: a fraction of httpcore's CPU per call) or "httpx" (httpx's own
    # transport, for proxies, or if an upstream ever answers in a way the lean one does not take)
    outbound_transport: Literal["lean", "httpx"] = "lean"

    rocketlit: ProductSettings | None = None
    innerorbit: ProductSettings | None = None

    # PEM private keys (RSA -> RS256, EC P-256 -> ES256). The first signs; all are published in the JWKS
    # so tokens signed by a retiring key stay valid until they expire. None in development: a key is
    # generated into data_dir/signing-key.pem.
    signing_key_files: list[Path] = Field(default_factory=list)
    signing_key: SecretStr | None = None

    # session store: SQLite file (default data_dir/sso-sessions.db) unless redis_url is set
    session_db_path: Path | None = None
    redis_url: SecretStr | None = None
    redis_prefix: str = "sso:"

    session_idle_seconds: int = Field(default=30 * 60, ge=60)
    session_absolute_seconds: int = Field(default=8 * 3600, ge=300)
    # a session older than this asks roster-api again before it hands a frontend a new code, so a person
    # removed from the roster or an offboarded district loses access within this window; 0: every time
    session_recheck_seconds: int = Field(default=300, ge=0)
    state_seconds: int = Field(default=600, ge=30, le=600)
    code_seconds: int = Field(default=60, ge=5, le=60)
    id_token_seconds: int = Field(default=300, ge=30, le=3600)
    access_token_seconds: int = Field(default=300, ge=30, le=3600)
    restart_guard_seconds: int = Field(default=30, ge=1, le=300)
    # Host header allowlist; empty accepts any (development)
    trusted_hosts: list[str] = Field(default_factory=list)

    @property
    def development(self) -> bool:
        return self.environment is Environment.DEVELOPMENT

    def products(self) -> dict[Product, ProductSettings]:
        found = {Product.ROCKETLIT: self.rocketlit, Product.INNERORBIT: self.innerorbit}
        return {p: s for p, s in found.items() if s is not None}

    @property
    def resolved_session_db(self) -> Path:
        return self.session_db_path or self.data_dir / "sso-sessions.db"

    @model_validator(mode="after")
    def _validate(self) -> Self:
        problems: list[str] = []
        dev = self.development

        def url(name: str, value: str, *, path_suffix: str | None = None) -> None:
            parts = urlsplit(value)
            if parts.scheme not in ("https", "http") or not parts.netloc:
                problems.append(f"{name} must be an absolute URL, got {value!r}")
            elif parts.scheme != "https" and not dev:
                problems.append(f"{name} must use https outside development, got {value!r}")
            elif parts.fragment:
                problems.append(f"{name} must not have a #fragment")
            elif path_suffix and not parts.path.endswith(path_suffix):
                problems.append(f"{name} must end with {path_suffix}, got {value!r}")

        url("SSO_ISSUER", self.issuer)
        if urlsplit(self.issuer).query:
            problems.append("SSO_ISSUER must not have a query string")
        url("SSO_CLEVER_AUTHORIZE_URL", self.clever_authorize_url)
        url("SSO_CLEVER_TOKEN_URL", self.clever_token_url)
        url("SSO_CLEVER_API_URL", self.clever_api_url)
        url("SSO_ROSTER_API_URL", self.roster_api_url)
        if not dev and self.roster_api_key.get_secret_value() in PLACEHOLDER_SECRETS:
            problems.append("SSO_ROSTER_API_KEY must be set (a roster-api key with scope 'resolve')")
        if not self.products():
            problems.append("configure at least one product: SSO_ROCKETLIT__... or SSO_INNERORBIT__...")
        if not dev and not (self.signing_key or self.signing_key_files):
            problems.append("SSO_SIGNING_KEY or SSO_SIGNING_KEY_FILES is required outside development")
        if self.session_absolute_seconds < self.session_idle_seconds:
            problems.append("SSO_SESSION_ABSOLUTE_SECONDS must be at least SSO_SESSION_IDLE_SECONDS")
        seen: set[str] = set()
        for product, conf in self.products().items():
            prefix = f"SSO_{product.value.upper()}__"
            url(
                prefix + "CLEVER_REDIRECT_URI",
                conf.clever_redirect_uri,
                path_suffix=CALLBACK_PATH.format(product=product.value),
            )
            if not dev and conf.clever_client_secret.get_secret_value() in PLACEHOLDER_SECRETS:
                problems.append(prefix + "CLEVER_CLIENT_SECRET must be set to the Clever app's secret")
            for client in conf.clients:
                if client.client_id in seen:
                    problems.append(f"OIDC client id {client.client_id!r} is configured twice")
                seen.add(client.client_id)
                where = f"{prefix}CLIENTS[{client.client_id}]"
                secret = client.client_secret.get_secret_value() if client.client_secret else None
                if secret is not None and not dev and (secret in PLACEHOLDER_SECRETS or len(secret) < 16):
                    problems.append(f"{where}.client_secret must be a real secret of 16+ characters")
                for uri in client.redirect_uris:
                    url(f"{where}.redirect_uris", uri)
                for uri in client.post_logout_redirect_uris:
                    url(f"{where}.post_logout_redirect_uris", uri)
                if client.login_initiation_uri:
                    url(f"{where}.login_initiation_uri", client.login_initiation_uri)
                if client.console and client.is_public:
                    problems.append(f"{where}: the console client must be confidential (a client_secret)")
        if problems:
            raise ValueError("invalid sso-gateway configuration: " + "; ".join(problems))
        return self
