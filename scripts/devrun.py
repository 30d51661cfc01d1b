"""`make run` (`python -m scripts.devrun`): the whole product on this machine, with demo data, in about
half a minute.

Builds a fresh demo under ./var/demo (SQLite database, a generated roster of a small district linked to
the Clever simulator's district, both products licensed, SFTP credentials), then starts roster-api (with
its import worker and nightly scheduler), its SFTP intake, the Clever simulator, sso-gateway and a demo
frontend for RocketLit and for InnerOrbit. It prints the URLs, an admin API key and the sftp command to
upload a changed roster, and stops everything on Ctrl-C.

Every port and path is a setting (`DEVRUN_<NAME>`, see `DevrunSettings`); with `DEVRUN_READY_FILE` set,
what it prints is also written there as JSON (the browser test reads it). Logs of each process go to
var/demo/logs/. The SFTP host key and the demo SSH key are kept in var/demo-keys/ across runs, so a
known_hosts entry stays valid.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from roster_harness import BIN, Processes, StartError, clean_env, console_client, console_settings

ROOT = Path(__file__).resolve().parent.parent

# The Clever district the simulator serves and the demo district is linked to.
CLEVER_DISTRICT_ID = "5b2ad81a709e300001e2cd7a"
DISTRICT_ID = "springfield-demo"
DISTRICT_NAME = "Springfield Demo District"
NOT_ROSTERED = {
    "id": "5b2ad81a709e300001e2cd99",
    "district": CLEVER_DISTRICT_ID,
    "role": "student",
    "first_name": "Nora",
    "last_name": "Notrostered",
    "email": "nora.notrostered@springfield.example.org",
}
# a Clever district admin of the demo district: logs in to the district console with "Log in with Clever"
DISTRICT_ADMIN = {
    "id": "5b2ad81a709e300001e2cd01",
    "district": CLEVER_DISTRICT_ID,
    "role": "district_admin",
    "first_name": "Dana",
    "last_name": "Districtadmin",
    "email": "dana.districtadmin@springfield.example.org",
}
# the console as an OpenID Connect client of the gateway (on RocketLit's Clever app)
CONSOLE_CLIENT_ID = "district-console"
CONSOLE_CLIENT_SECRET = "district-console-demo-client-secret"  # noqa: S105 (the demo's, printed nowhere)


class DevrunSettings(BaseSettings):
    """`DEVRUN_<NAME>` variables; e.g. `DEVRUN_GATEWAY_PORT=9100 make run`."""

    model_config = SettingsConfigDict(env_prefix="DEVRUN_", extra="ignore")

    var_dir: Path = ROOT / "var"
    host: str = "127.0.0.1"
    roster_port: int = Field(default=8000, ge=1, le=65535)
    sftp_port: int = Field(default=2222, ge=1, le=65535)
    gateway_port: int = Field(default=8100, ge=1, le=65535)
    clever_port: int = Field(default=8200, ge=1, le=65535)
    rocketlit_port: int = Field(default=8300, ge=1, le=65535)
    innerorbit_port: int = Field(default=8400, ge=1, le=65535)
    students: int = Field(default=60, ge=1, le=5000)
    seed: int = 7
    ready_file: Path | None = None
    startup_timeout_seconds: float = Field(default=60.0, gt=0)

    def url(self, port: int) -> str:
        return f"http://{self.host}:{port}"


class DemoError(Exception):
    """Start-up failed; the message says where and the log file has the rest."""


@dataclass
class Stack:
    settings: DevrunSettings
    demo_dir: Path
    keys_dir: Path
    logs_dir: Path
    info: dict[str, Any] = field(default_factory=dict)
    processes: Processes = field(init=False)

    def __post_init__(self) -> None:
        self.processes = Processes(self.logs_dir, ready_timeout=self.settings.startup_timeout_seconds)

    # --- processes (started, waited for and stopped by the shared harness, roster_harness) ----------

    def base_env(self) -> dict[str, str]:
        # Settings from the caller's shell must not leak into the demo (a ROSTER_DATABASE_URL pointing
        # at a real database, say): each service gets exactly the variables below.
        return clean_env(PYTHONUNBUFFERED="1")

    def roster_env(self) -> dict[str, str]:
        s = self.settings
        return {
            **self.base_env(),
            "ROSTER_ENVIRONMENT": "development",
            "ROSTER_DATABASE_URL": f"sqlite:///{self.demo_dir / 'roster.db'}",
            "ROSTER_DATA_DIR": str(self.demo_dir / "data"),
            "ROSTER_HOST": s.host,
            "ROSTER_PORT": str(s.roster_port),
            "ROSTER_SFTP_HOST": s.host,
            "ROSTER_SFTP_PORT": str(s.sftp_port),
            "ROSTER_SFTP_PUBLIC_HOST": s.host,
            "ROSTER_SFTP_HOST_KEY_PATH": str(self.keys_dir / "ssh_host_ed25519_key"),
            "ROSTER_RUN_WORKER": "true",
            "ROSTER_RUN_SCHEDULER": "true",
            "ROSTER_WORKER_POLL_SECONDS": "0.5",
            **console_settings(
                s.url(s.roster_port),
                s.url(s.gateway_port),
                client_id=CONSOLE_CLIENT_ID,
                secret=CONSOLE_CLIENT_SECRET,
            ),
        }

    def run(self, name: str, args: list[str], env: dict[str, str]) -> str:
        """A one-shot command; its stdout, or DemoError with its stderr."""
        result = subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise DemoError(f"{name} failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
        return result.stdout.strip()

    def start(self, name: str, args: list[str], env: dict[str, str], health: str | None = None) -> None:
        # A session of its own: Ctrl-C reaches only this script, which then stops the services in order.
        self.processes.start(name, args, env=env, health=health, cwd=ROOT, new_session=True)

    def check_alive(self) -> None:
        self.processes.check_alive()

    def stop(self) -> None:
        self.processes.stop()

    # --- the demo ----------------------------------------------------------------------------------

    def check_ports(self) -> None:
        """Fail before building anything when a port is taken (another `make run`, say)."""
        s = self.settings
        ports = {
            "DEVRUN_ROSTER_PORT": s.roster_port,
            "DEVRUN_SFTP_PORT": s.sftp_port,
            "DEVRUN_GATEWAY_PORT": s.gateway_port,
            "DEVRUN_CLEVER_PORT": s.clever_port,
            "DEVRUN_ROCKETLIT_PORT": s.rocketlit_port,
            "DEVRUN_INNERORBIT_PORT": s.innerorbit_port,
        }
        if len(set(ports.values())) != len(ports):
            raise DemoError(f"two services would share a port: {ports}")
        for name, port in ports.items():
            with socket.socket() as sock:
                # as the servers do: a port left in TIME_WAIT by the previous run is free
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((s.host, port))
                except OSError as exc:
                    raise DemoError(
                        f"port {port} on {s.host} is in use ({exc.strerror}); is another demo running? "
                        f"Stop it, or choose another port with {name}=..."
                    ) from exc

    def prepare(self) -> None:
        if self.demo_dir.exists():
            shutil.rmtree(self.demo_dir)
        for path in (self.demo_dir, self.logs_dir, self.keys_dir, self.demo_dir / "data"):
            path.mkdir(parents=True, exist_ok=True)
        from bench.roster_gen import generate

        s = self.settings
        counts = generate(self.demo_dir / "roster.csv", students=s.students, seed=s.seed)
        # The same district with a tenth of the students removed, renamed or added: below the safety hold.
        generate(self.demo_dir / "roster-changed.csv", students=s.students, seed=s.seed, churn=0.1)
        self.info["roster"] = {"path": str(self.demo_dir / "roster.csv"), **counts}

    def demo_ssh_key(self) -> tuple[Path, str]:
        """The key the printed sftp command uses, so that it runs without a password prompt."""
        private = self.keys_dir / "demo_sftp_ed25519"
        if not private.exists():
            key = Ed25519PrivateKey.generate()
            pem = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.OpenSSH,
                serialization.NoEncryption(),
            )
            private.write_bytes(pem)
            private.chmod(0o600)
        loaded = serialization.load_ssh_private_key(private.read_bytes(), password=None)
        public = loaded.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        return private, public.decode() + " demo@devrun"

    def setup_roster(self) -> None:
        s = self.settings
        env = self.roster_env()
        roster_api = str(BIN / "roster-api")
        self.run("roster-api migrate", [roster_api, "migrate"], env)
        create = [roster_api, "keys", "create", "--name"]
        admin_key = self.run("keys create", [*create, "demo-admin", "--scope", "admin"], env)
        resolve_key = self.run("keys create", [*create, "sso-gateway", "--scope", "resolve"], env)
        self.info["admin_api_key"] = admin_key
        self.info["resolve_api_key"] = resolve_key
        # a person's key for the district console's "Sign in with a key" (support sees every district)
        support_key = self.run("keys create", [*create, "demo-support", "--scope", "admin"], env)
        self.info["support_api_key"] = support_key

        api = s.url(s.roster_port)
        self.start("roster-api", [roster_api, "serve"], env, health=f"{api}/readyz")
        self.processes.wait_up("roster-api")
        client = httpx.Client(base_url=api, headers={"Authorization": f"Bearer {admin_key}"}, timeout=30.0)
        with client:
            self.expect(
                client.post(
                    "/v1/districts",
                    json={
                        "id": DISTRICT_ID,
                        "name": DISTRICT_NAME,
                        "clever_district_id": CLEVER_DISTRICT_ID,
                        "licenses": {"rocketlit": {"seats": 5000}, "innerorbit": {"seats": 5000}},
                    },
                ),
                "create the demo district",
            )
            self.import_roster(client)
            read_key = self.run(
                "keys create",
                [*create, "demo-frontend", "--scope", "roster:read", "--district", DISTRICT_ID],
                env,
            )
            self.info["frontend_read_key"] = read_key
            private, public = self.demo_ssh_key()
            credential = self.expect(
                client.post(
                    f"/v1/districts/{DISTRICT_ID}/sftp-credentials",
                    json={"password": True, "public_keys": [public]},
                ),
                "create SFTP credentials",
            )
            self.info["sftp"] = {
                "host": s.host,
                "port": s.sftp_port,
                "username": credential["username"],
                "password": credential["password"],
                "private_key": str(private),
            }
            host_key = self.expect(client.get("/v1/sftp/host-key"), "read the SFTP host key")
            known_hosts = self.demo_dir / "known_hosts"
            known_hosts.write_text(host_key["known_hosts_line"].strip() + "\n", encoding="utf-8")
            self.info["sftp"]["known_hosts"] = str(known_hosts)
        self.start("roster-sftp", [roster_api, "sftp"], env)
        self.processes.wait_listening("roster-sftp", s.host, s.sftp_port)

    def import_roster(self, client: httpx.Client) -> None:
        body = (self.demo_dir / "roster.csv").read_bytes()
        run = self.expect(
            client.post(
                f"/v1/districts/{DISTRICT_ID}/imports", content=body, headers={"Content-Type": "text/csv"}
            ),
            "upload the demo roster",
        )
        deadline = time.monotonic() + self.settings.startup_timeout_seconds
        while run["status"] in ("queued", "running"):
            if time.monotonic() > deadline:
                raise DemoError("the demo roster import did not finish in time")
            time.sleep(0.3)
            run = self.expect(client.get(f"/v1/imports/{run['id']}"), "read the import")
        if run["status"] != "applied":
            raise DemoError(f"the demo roster import ended {run['status']}: {json.dumps(run)[:2000]}")
        self.info["import"] = {"id": run["id"], "status": run["status"]}

    @staticmethod
    def expect(response: httpx.Response, what: str) -> Any:
        if response.status_code >= 400:
            raise DemoError(f"could not {what}: HTTP {response.status_code} {response.text[:1000]}")
        return response.json() if response.content else None

    def start_clever(self) -> None:
        s = self.settings
        gateway = s.url(s.gateway_port)
        apps = []
        for product, name in (("rocketlit", "RocketLit"), ("innerorbit", "InnerOrbit")):
            apps.append(
                {
                    "client_id": f"{product}-clever-app",
                    "client_secret": f"{product}-clever-secret-for-the-demo",
                    "redirect_uris": [f"{gateway}/callback/clever/{product}"],
                    "name": name,
                }
            )
        config = {
            "districts": [{"id": CLEVER_DISTRICT_ID, "name": DISTRICT_NAME, "roster": "roster.csv"}],
            "users": [NOT_ROSTERED, DISTRICT_ADMIN],
            "apps": apps,
        }
        path = self.demo_dir / "clever-sim.json"
        path.write_text(json.dumps(config, indent=2), encoding="utf-8")
        self.info["clever_apps"] = apps
        args = [str(BIN / "clever-sim"), "serve", "--host", s.host, "--port", str(s.clever_port)]
        self.start("clever-sim", [*args, "--config", str(path)], self.base_env(), s.url(s.clever_port) + "/")
        self.processes.wait_up("clever-sim")

    def frontend_client(self, product: str) -> dict[str, Any]:
        base = self.settings.url(getattr(self.settings, f"{product}_port"))
        return {
            "client_id": f"{product}-demo",
            "client_secret": f"{product}-demo-client-secret",
            "redirect_uris": [f"{base}/auth/callback"],
            "post_logout_redirect_uris": [f"{base}/"],
            "login_initiation_uri": f"{base}/login",
        }

    def start_gateway(self) -> None:
        s = self.settings
        clever = s.url(s.clever_port)
        gateway = s.url(s.gateway_port)
        env = {
            **self.base_env(),
            "SSO_ENVIRONMENT": "development",
            "SSO_ISSUER": gateway,
            "SSO_HOST": s.host,
            "SSO_PORT": str(s.gateway_port),
            "SSO_DATA_DIR": str(self.demo_dir / "gateway"),
            "SSO_CLEVER_AUTHORIZE_URL": f"{clever}/oauth/authorize",
            "SSO_CLEVER_TOKEN_URL": f"{clever}/oauth/tokens",
            "SSO_CLEVER_API_URL": clever,
            "SSO_ROSTER_API_URL": s.url(s.roster_port),
            "SSO_ROSTER_API_KEY": self.info["resolve_api_key"],
        }
        for app in self.info["clever_apps"]:
            product = app["client_id"].removesuffix("-clever-app")
            prefix = f"SSO_{product.upper()}__"
            env[prefix + "DISPLAY_NAME"] = app["name"]
            env[prefix + "CLEVER_CLIENT_ID"] = app["client_id"]
            env[prefix + "CLEVER_CLIENT_SECRET"] = app["client_secret"]
            env[prefix + "CLEVER_REDIRECT_URI"] = app["redirect_uris"][0]
            clients = [self.frontend_client(product)]
            if product == "rocketlit":
                roster = s.url(s.roster_port)
                clients.append(
                    console_client(roster, client_id=CONSOLE_CLIENT_ID, secret=CONSOLE_CLIENT_SECRET)
                )
            env[prefix + "CLIENTS"] = json.dumps(clients)
        (self.demo_dir / "gateway").mkdir(exist_ok=True)
        self.start("sso-gateway", [str(BIN / "sso-gateway"), "serve"], env, f"{gateway}/readyz")
        self.processes.wait_up("sso-gateway")

    def start_frontends(self) -> None:
        s = self.settings
        for product in ("rocketlit", "innerorbit"):
            client = self.frontend_client(product)
            port = getattr(s, f"{product}_port")
            env = {
                **self.base_env(),
                "DEMO_PRODUCT": product,
                "DEMO_HOST": s.host,
                "DEMO_PORT": str(port),
                "DEMO_BASE_URL": s.url(port),
                "DEMO_ISSUER": s.url(s.gateway_port),
                "DEMO_CLIENT_ID": client["client_id"],
                "DEMO_CLIENT_SECRET": client["client_secret"],
                "DEMO_ROSTER_API_URL": s.url(s.roster_port),
                "DEMO_ROSTER_API_KEY": self.info["frontend_read_key"],
            }
            health = s.url(port) + "/healthz"
            self.start(f"{product}-frontend", [str(BIN / "demo-frontend"), "serve"], env, health)
        self.processes.wait_up("rocketlit-frontend", "innerorbit-frontend")

    def summary(self) -> dict[str, Any]:
        s = self.settings
        sftp = self.info["sftp"]
        changed = self.demo_dir / "roster-changed.csv"
        command = (
            f"sftp -P {sftp['port']} -i {sftp['private_key']} -o IdentitiesOnly=yes"
            f" -o UserKnownHostsFile={sftp['known_hosts']} {sftp['username']}@{sftp['host']}"
        )
        students = self.roster_people("student", 3)
        return {
            "urls": {
                "rocketlit": s.url(s.rocketlit_port),
                "innerorbit": s.url(s.innerorbit_port),
                "clever_portal": s.url(s.clever_port) + "/portal",
                "clever_simulator": s.url(s.clever_port),
                "sso_gateway": s.url(s.gateway_port),
                "roster_api": s.url(s.roster_port),
                "roster_api_docs": s.url(s.roster_port) + "/docs",
                "console": s.url(s.roster_port) + "/console/",
            },
            "support_api_key": self.info["support_api_key"],
            "admin_api_key": self.info["admin_api_key"],
            "district_id": DISTRICT_ID,
            "roster": self.info["roster"],
            "clever_district_id": CLEVER_DISTRICT_ID,
            "demo_students": students,
            "demo_teachers": self.roster_people("teacher", 1),
            "not_rostered": f"{NOT_ROSTERED['first_name']} {NOT_ROSTERED['last_name']}",
            "console_clever_admin": f"{DISTRICT_ADMIN['first_name']} {DISTRICT_ADMIN['last_name']}",
            "sftp": {**sftp, "command": command, "changed_roster": str(changed)},
            "logs": str(self.logs_dir),
        }

    def roster_people(self, role: str, limit: int) -> list[str]:
        import csv

        seen: list[str] = []
        with (self.demo_dir / "roster.csv").open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                name = f"{row[f'{role}_first_name']} {row[f'{role}_last_name']}"
                if name not in seen:
                    seen.append(name)
                if len(seen) >= limit:
                    break
        return seen


def print_summary(summary: dict[str, Any]) -> None:
    urls, sftp = summary["urls"], summary["sftp"]
    lines = [
        "",
        "The demo is running. Open:",
        f"  RocketLit (Log in with Clever)    {urls['rocketlit']}",
        f"  InnerOrbit                        {urls['innerorbit']}",
        f"  Clever portal (Instant Login)     {urls['clever_portal']}",
        f"  sso-gateway                       {urls['sso_gateway']}/.well-known/openid-configuration",
        f"  roster-api (OpenAPI docs)         {urls['roster_api_docs']}",
        "",
        f"Demo students to log in as: {', '.join(summary['demo_students'])}; teacher: "
        f"{', '.join(summary['demo_teachers'])}.",
        f"Not on the roster (shows the friendly error page): {summary['not_rostered']}.",
        "",
        f"District console:  {urls['console']}",
        f"  district admin: Log in with Clever as {summary['console_clever_admin']}",
        f"  sign in as support with the key {summary['support_api_key']}",
        "",
        f"Admin API key:  {summary['admin_api_key']}",
        f"  curl -H 'Authorization: Bearer {summary['admin_api_key']}' "
        f"{urls['roster_api']}/v1/districts/{summary['district_id']}",
        "",
        "Upload a changed roster by SFTP (the result appears in results/ within seconds):",
        f"  {sftp['command']}",
        f"  sftp> put {sftp['changed_roster']} roster.csv",
        "  sftp> ls results",
        "  sftp> get results/roster.csv.<time>-<id>.txt     (the newest: APPLIED, counts, changes)",
        f"  (or log in with the password {sftp['password']}: sftp -P {sftp['port']} "
        f"{sftp['username']}@{sftp['host']})",
        "",
        f"Logs: {summary['logs']}.  Press Ctrl-C to stop everything.",
        "",
    ]
    print("\n".join(lines), flush=True)


def main() -> int:
    settings = DevrunSettings()
    var_dir = settings.var_dir.resolve()
    stack = Stack(
        settings=settings,
        demo_dir=var_dir / "demo",
        keys_dir=var_dir / "demo-keys",
        logs_dir=var_dir / "demo" / "logs",
    )
    stopping = False

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    started = time.monotonic()
    try:
        stack.check_ports()
        print("Preparing the demo under", stack.demo_dir, flush=True)
        stack.prepare()
        stack.setup_roster()
        stack.start_clever()
        stack.start_gateway()
        stack.start_frontends()
        summary = stack.summary()
        summary["startup_seconds"] = round(time.monotonic() - started, 1)
        if settings.ready_file is not None:
            settings.ready_file.write_text(json.dumps(summary, indent=2), encoding="utf-8")
        print_summary(summary)
        print(f"(started in {summary['startup_seconds']} s)", flush=True)
        while True:
            stack.check_alive()
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nStopping...", flush=True)
        stack.stop()
        print("Stopped.", flush=True)
        return 0
    except (DemoError, StartError) as exc:
        print(f"\nThe demo could not start: {exc}", file=sys.stderr, flush=True)
        stack.stop()
        return 1
    except BaseException:
        stack.stop()
        raise


if __name__ == "__main__":
    sys.exit(main())
