"""The login stack: roster-api, the Clever simulator and sso-gateway, each its own process on a free port,
wired together for RocketLit as `make run` wires them (the gateway is Clever's OAuth client and asks
roster-api to resolve every login). Used by the end-to-end tests and the login benchmark."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from roster_harness.processes import BIN, Processes, clean_env, free_ports

PRODUCT = "rocketlit"
CLEVER_CLIENT_ID = "rl-clever"
CLEVER_CLIENT_SECRET = "rl-clever-secret"


def uvicorn_command(app: str, *, port: int, factory: bool, workers: int = 1) -> list[str]:
    """An app under uvicorn as deployed: uvloop, httptools, no access log. `factory`: `app` names a
    function returning the app (`roster_api.main:create_app` reads its settings from the environment)."""
    command = [
        sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
        "--workers", str(workers), "--loop", "uvloop", "--http", "httptools", "--no-access-log",
        "--log-level", "warning",
    ]  # fmt: skip
    return [*command, "--factory"] if factory else command


def serve_command(service: str, *, port: int, workers: int = 1) -> list[str]:
    """One worker: the service's own `serve` command, as deployed. Several: uvicorn's process manager
    over the same app factory (both CLIs call create_app with settings from the environment)."""
    if workers == 1:
        return [str(BIN / service), "serve", "--port", str(port)]
    module = {"roster-api": "roster_api.main", "sso-gateway": "sso_gateway.main"}[service]
    return uvicorn_command(f"{module}:create_app", port=port, factory=True, workers=workers)


def console_client(roster: str, *, client_id: str, secret: str) -> dict[str, Any]:
    """The district console of the roster-api at `roster` as a confidential client of the gateway (one of
    RocketLit's `clients`): PKCE required, `console: true` so the gateway signs district admins in to it."""
    console = f"{roster}/console"
    return {
        "client_id": client_id,
        "client_secret": secret,
        "redirect_uris": [f"{console}/auth/callback"],
        "post_logout_redirect_uris": [f"{console}/login"],
        "login_initiation_uri": f"{console}/login",
        "require_pkce": True,
        "console": True,
    }


def console_settings(roster: str, gateway: str, *, client_id: str, secret: str) -> dict[str, str]:
    """roster-api's side of the same client: its `ROSTER_CONSOLE_OIDC_*` settings."""
    return {
        "ROSTER_CONSOLE_OIDC_ISSUER": gateway,
        "ROSTER_CONSOLE_OIDC_CLIENT_ID": client_id,
        "ROSTER_CONSOLE_OIDC_CLIENT_SECRET": secret,
        "ROSTER_CONSOLE_OIDC_REDIRECT_URI": f"{roster}/console/auth/callback",
    }


class LoginStack:
    """The three services on free ports chosen at construction (so each URL is known before anything
    starts: the console's settings name the gateway, the gateway's name roster-api). `start()` starts
    them and waits until each answers; leaving the `with` block stops them. Logs and data directories
    are under `work`; the simulator's config is `work/sim.json`, so a district's `"roster": "roster.csv"`
    is `work/roster.csv`."""

    def __init__(self, work: Path, *, database_url: str) -> None:
        self.work = work
        self.database_url = database_url
        roster_port, gateway_port, clever_port = free_ports(3)
        self.ports = {"roster-api": roster_port, "sso-gateway": gateway_port, "clever-sim": clever_port}
        self.roster = f"http://127.0.0.1:{roster_port}"
        self.gateway = f"http://127.0.0.1:{gateway_port}"
        self.clever = f"http://127.0.0.1:{clever_port}"
        self.clever_redirect_uri = f"{self.gateway}/callback/clever/{PRODUCT}"
        self.processes = Processes(work)

    def roster_env(self, **extra: str) -> dict[str, str]:
        """roster-api's settings here: this stack's database and data directory, no worker, no scheduler."""
        return clean_env(
            ROSTER_DATABASE_URL=self.database_url,
            ROSTER_DATA_DIR=str(self.work / "roster"),
            ROSTER_RUN_WORKER="false",
            ROSTER_RUN_SCHEDULER="false",
            **extra,
        )

    def create_key(self, *scopes: str, name: str = "sso-gateway") -> str:
        """A new API key from `roster-api keys create`, as an operator makes the gateway's."""
        command = [str(BIN / "roster-api"), "keys", "create", "--name", name]
        for scope in scopes or ("resolve",):
            command += ["--scope", scope]
        done = subprocess.run(command, env=self.roster_env(), capture_output=True, text=True, check=True)
        return done.stdout.strip()

    def gateway_env(self, *, key: str, clients: Sequence[Mapping[str, Any]], **extra: str) -> dict[str, str]:
        """sso-gateway's settings: the simulator as Clever, this roster-api, RocketLit with `clients`."""
        return clean_env(
            SSO_ENVIRONMENT="development",
            SSO_ISSUER=self.gateway,
            SSO_DATA_DIR=str(self.work / "gateway"),
            SSO_CLEVER_AUTHORIZE_URL=f"{self.clever}/oauth/authorize",
            SSO_CLEVER_TOKEN_URL=f"{self.clever}/oauth/tokens",
            SSO_CLEVER_API_URL=self.clever,
            SSO_ROSTER_API_URL=self.roster,
            SSO_ROSTER_API_KEY=key,
            SSO_ROCKETLIT__DISPLAY_NAME="RocketLit",
            SSO_ROCKETLIT__CLEVER_CLIENT_ID=CLEVER_CLIENT_ID,
            SSO_ROCKETLIT__CLEVER_CLIENT_SECRET=CLEVER_CLIENT_SECRET,
            SSO_ROCKETLIT__CLEVER_REDIRECT_URI=self.clever_redirect_uri,
            SSO_ROCKETLIT__CLIENTS=json.dumps(list(clients)),
            **extra,
        )

    def write_sim_config(self, *, districts: list[dict[str, Any]], users: list[dict[str, Any]]) -> Path:
        """The simulator's districts and users, and RocketLit's Clever app pointing at this gateway."""
        app = {
            "client_id": CLEVER_CLIENT_ID,
            "client_secret": CLEVER_CLIENT_SECRET,
            "name": "RocketLit",
            "redirect_uris": [self.clever_redirect_uri],
        }
        path = self.work / "sim.json"
        path.write_text(json.dumps({"districts": districts, "users": users, "apps": [app]}))
        return path

    def start(
        self,
        *,
        key: str,
        clients: Sequence[Mapping[str, Any]],
        districts: list[dict[str, Any]],
        users: list[dict[str, Any]],
        roster_env: Mapping[str, str] | None = None,
        gateway_env: Mapping[str, str] | None = None,
        roster_workers: int = 1,
        gateway_workers: int = 1,
    ) -> None:
        """Starts all three at once and returns when each answers (`/readyz`; the simulator's `/`).
        `roster_env` / `gateway_env`: settings on top of `roster_env()` / `gateway_env()`."""
        config = self.write_sim_config(districts=districts, users=users)
        ports = self.ports
        self.processes.start(
            "roster-api",
            serve_command("roster-api", port=ports["roster-api"], workers=roster_workers),
            env=self.roster_env(**(roster_env or {})),
            url=self.roster,
            health=f"{self.roster}/readyz",
        )
        self.processes.start(
            "clever-sim",
            [BIN / "clever-sim", "serve", "--port", str(ports["clever-sim"]), "--config", config],
            env=clean_env(),
            url=self.clever,
            health=f"{self.clever}/",
        )
        self.processes.start(
            "sso-gateway",
            serve_command("sso-gateway", port=ports["sso-gateway"], workers=gateway_workers),
            env=self.gateway_env(key=key, clients=clients, **(gateway_env or {})),
            url=self.gateway,
            health=f"{self.gateway}/readyz",
        )
        self.processes.wait_up()

    def stop(self) -> None:
        self.processes.stop()

    def __enter__(self) -> LoginStack:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.processes.__exit__(kind, error, trace)
