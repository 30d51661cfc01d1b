from __future__ import annotations

import secrets
from enum import StrEnum
from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Product(StrEnum):
    ROCKETLIT = "rocketlit"
    INNERORBIT = "innerorbit"


DISPLAY_NAMES = {Product.ROCKETLIT: "RocketLit", Product.INNERORBIT: "InnerOrbit"}


class Settings(BaseSettings):
    """Every setting is an environment variable `DEMO_<NAME>`. One process serves one product."""

    model_config = SettingsConfigDict(env_prefix="DEMO_", extra="ignore")

    product: Product = Product.ROCKETLIT
    host: str = "127.0.0.1"
    port: int = Field(default=8300, ge=0, le=65535)
    # The URL the browser uses for this frontend; the OIDC redirect URI is <base_url>/auth/callback.
    base_url: str = "http://127.0.0.1:8300"
    # sso-gateway's issuer URL; the rest comes from its discovery document.
    issuer: str = "http://127.0.0.1:8100"
    client_id: str = "rocketlit-demo"
    client_secret: SecretStr = SecretStr("")
    # Signs this frontend's own session cookie; a fresh one per process unless given.
    session_secret: SecretStr = Field(default_factory=lambda: SecretStr(secrets.token_urlsafe(32)))
    # Optional: a roster-api key (scope roster:read) to show school names, as a real product would from
    # its own copy of the roster. Without it the page shows the school ids from the login.
    roster_api_url: str | None = None
    roster_api_key: SecretStr | None = None
    log_level: str = "INFO"

    @property
    def display_name(self) -> str:
        return DISPLAY_NAMES[self.product]

    @property
    def redirect_uri(self) -> str:
        return self.base_url.rstrip("/") + "/auth/callback"

    @property
    def cookie_name(self) -> str:
        # Browsers do not separate cookies by port: each product on 127.0.0.1 needs its own name.
        return f"{self.product.value}_demo_session"

    @model_validator(mode="after")
    def _check(self) -> Self:
        if not self.client_secret.get_secret_value():
            raise ValueError("DEMO_CLIENT_SECRET must be set: the client secret registered at the gateway")
        return self
