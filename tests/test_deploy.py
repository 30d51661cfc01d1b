"""The deploy files, checked without a container engine or a cluster: every Kubernetes manifest against the
Kubernetes JSON schemas (strict: an unknown field fails), compose.yml against the Compose Specification
schema, every environment variable they set against the Settings classes the services read, every command
they run against the services' CLIs, and every file a Dockerfile copies against the repository."""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import json
import os
import re
import shlex
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
KUBERNETES_VERSION = "1.30.0"  # the oldest version still supported by the managed clouds we target
ROSTER_IMAGE = "roster-api"
GATEWAY_IMAGE = "sso-gateway"


def _load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


gen_env_docs = _load_script("gen_env_docs")


def _k8s_documents() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for index, doc in enumerate(yaml.safe_load_all(path.read_text(encoding="utf-8"))):
            if doc is not None:
                yield f"{path.name}#{index}", doc


K8S_DOCS = list(_k8s_documents())


def _compose() -> dict[str, Any]:
    data = yaml.safe_load((DEPLOY / "compose.yml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _image_service(image: str) -> str | None:
    # compose writes ${ROSTER_IMAGE:-roster-api:latest}: the default is the image
    image = re.sub(r"^\$\{[A-Z_]+:-(.*)\}$", r"\1", image)
    name = image.rsplit("/", 1)[-1].split(":", 1)[0]
    if name == ROSTER_IMAGE:
        return "roster-api"
    if name == GATEWAY_IMAGE:
        return "sso-gateway"
    return None  # PostgreSQL, Redis: not ours


def _known_vars(service: str) -> list[Any]:
    settings_cls = gen_env_docs.load_settings(service)
    if settings_cls is None:
        pytest.skip(f"{service} is not installed")
    return list(gen_env_docs.env_vars(settings_cls))


def _check_command(service: str, args: list[str]) -> None:
    """Parse `args` with the service's real CLI, as the container entrypoint would, without running it:
    with `--help` appended, the parser rejects an unknown command (and click an unknown option) and
    otherwise only prints help."""
    module_name = {"roster-api": "roster_api.cli", "sso-gateway": "sso_gateway.cli"}[service]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError:
        pytest.skip(f"{module_name} is not installed")
    assert args, f"{service}: no command given"
    if hasattr(module, "app"):  # typer
        result = CliRunner().invoke(module.app, [*args, "--help"])
        assert result.exit_code == 0, (
            f"`{service} {' '.join(args)}` is not a valid command line: {result.output}"
        )
        return
    # argparse: --help stops parsing where it stands, so check the subcommand, then the options alone
    with pytest.raises(SystemExit) as exit_info:
        module.main([args[0], "--help"])
    assert exit_info.value.code == 0, f"{service} has no command {args[0]!r}"
    if len(args) > 1:
        with pytest.raises(SystemExit) as exit_info:
            module.main([*args, "--no-such-option-here"])
        assert exit_info.value.code == 2


def _shell_commands(service: str, spec: dict[str, Any]) -> list[list[str]]:
    """The service's command lines in a compose service: its `command`, or each `roster-api ...` call in
    an `sh -c` loop."""
    command = spec.get("command", [])
    words = shlex.split(command) if isinstance(command, str) else list(command)
    entrypoint = spec.get("entrypoint")
    if entrypoint is not None and entrypoint[0] == "python" and len(entrypoint) == 2:
        # a script of deploy/ mounted into the image (the certificates job): not the service's CLI
        mounts = {v.split(":")[1]: v.split(":")[0] for v in spec.get("volumes", []) if v.startswith("./")}
        assert entrypoint[1] in mounts, f"{entrypoint[1]} is not mounted from deploy/"
        assert (DEPLOY / mounts[entrypoint[1]]).is_file(), mounts[entrypoint[1]]
        return []
    if entrypoint in (["/bin/sh", "-c"], ["sh", "-c"]):
        script = " ".join(words)
        calls = re.findall(rf"(?:^|[;&|]\s*|do\s+){re.escape(service)}\s+([^;&|]+)", script)
        assert calls, f"no {service} call in {script!r}"
        return [shlex.split(call) for call in calls]
    assert entrypoint is None, "keep the image's entrypoint or use sh -c"
    return [words]


# --- Kubernetes -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("where", "doc"), K8S_DOCS, ids=[w for w, _ in K8S_DOCS])
def test_deploy_k8s_manifest_is_valid(where: str, doc: dict[str, Any]) -> None:
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{where}: {exc.message} at {'.'.join(map(str, exc.path))}")


def test_deploy_k8s_schema_check_catches_mistakes() -> None:
    broken = json.loads(json.dumps(_by_kind("Deployment")["roster-api"]))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {"path": "/readyz"}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def _by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in K8S_DOCS if doc["kind"] == kind}


def _pod_specs() -> Iterator[tuple[str, dict[str, Any]]]:
    for _, doc in K8S_DOCS:
        kind, name = doc["kind"], doc["metadata"]["name"]
        if kind in ("Deployment", "Job"):
            yield f"{kind}/{name}", doc["spec"]["template"]["spec"]
        elif kind == "CronJob":
            yield f"{kind}/{name}", doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def test_deploy_k8s_has_every_piece() -> None:
    deployments = _by_kind("Deployment")
    assert {"roster-api", "roster-worker", "roster-sftp", "sso-gateway"} <= set(deployments)
    assert "roster-migrate" in _by_kind("Job")
    assert "roster-nightly" in _by_kind("CronJob")
    for name in ("roster-api", "sso-gateway"):
        assert name in _by_kind("Service")
        pdb = _by_kind("PodDisruptionBudget")[name]
        hpa = _by_kind("HorizontalPodAutoscaler")[name]
        assert hpa["spec"]["scaleTargetRef"]["name"] in deployments
        labels = deployments[name]["spec"]["template"]["metadata"]["labels"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
        # An HPA on CPU needs CPU requests to compute utilization.
        container = deployments[name]["spec"]["template"]["spec"]["containers"][0]
        assert container["resources"]["requests"]["cpu"]
    assert _by_kind("PersistentVolumeClaim")["roster-data"]["spec"]["accessModes"] == ["ReadWriteMany"]


def test_deploy_k8s_http_services_probe_readyz_and_healthz() -> None:
    for name, deployment in _by_kind("Deployment").items():
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        ports = {port["name"] for port in container.get("ports", [])}
        if "http" not in ports:
            continue
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name


def test_deploy_k8s_pods_run_as_non_root_without_privileges() -> None:
    for where, pod in _pod_specs():
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["automountServiceAccountToken"] is False, where
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            assert context["readOnlyRootFilesystem"] is True, where
            assert "memory" in container["resources"]["limits"], where


def test_deploy_k8s_references_resolve() -> None:
    config_maps, secrets, claims = (
        _by_kind("ConfigMap"),
        _by_kind("Secret"),
        _by_kind("PersistentVolumeClaim"),
    )
    services = _by_kind("Service")
    deployments = _by_kind("Deployment")
    for where, pod in _pod_specs():
        for volume in pod.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims, where
        for container in pod["containers"]:
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in config_maps, where
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in secrets, where
            mounted = {mount["name"] for mount in container.get("volumeMounts", [])}
            assert mounted <= {volume["name"] for volume in pod.get("volumes", [])}, where
    for name, service in services.items():
        selector = service["spec"]["selector"].items()
        assert any(
            selector <= d["spec"]["template"]["metadata"]["labels"].items() for d in deployments.values()
        ), f"Service/{name} selects no pod"


def test_deploy_k8s_processes_sharing_uploads_mount_the_same_volume() -> None:
    """The SFTP intake writes uploads the worker imports and the API serves; nightly re-reads them."""
    mounts: dict[str, str] = {}
    for where, pod in _pod_specs():
        claim_volumes = {
            v["name"]: v["persistentVolumeClaim"]["claimName"]
            for v in pod.get("volumes", [])
            if "persistentVolumeClaim" in v
        }
        for container in pod["containers"]:
            for mount in container.get("volumeMounts", []):
                if mount["name"] in claim_volumes:
                    mounts[where] = f"{claim_volumes[mount['name']]}:{mount['mountPath']}"
    expected = "roster-data:/var/lib/roster"
    for where in (
        "Deployment/roster-api",
        "Deployment/roster-worker",
        "Deployment/roster-sftp",
        "CronJob/roster-nightly",
    ):
        assert mounts.get(where) == expected, where
    data_dir = _by_kind("ConfigMap")["roster-api-config"]["data"]["ROSTER_DATA_DIR"]
    assert data_dir == "/var/lib/roster"


def test_deploy_kustomization_lists_every_manifest_but_the_secret_templates() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    listed = set(kustomization["resources"])
    manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    templates = {name for name in manifests if name.endswith(".template.yaml")}
    assert templates, "Secret templates are expected"
    assert listed == manifests - templates
    for name in templates:
        docs = list(yaml.safe_load_all((K8S / name).read_text(encoding="utf-8")))
        for doc in docs:
            assert doc["kind"] == "Secret"
            values = doc.get("stringData", {})
            assert values, name
            assert all("REPLACE_ME" in str(v) for v in values.values()), (
                f"{name}: a real value in a template?"
            )


def _k8s_env(service: str) -> dict[str, set[str]]:
    """Variable name -> where it is set, for the containers running `service`'s image."""
    config_maps, secrets = _by_kind("ConfigMap"), _by_kind("Secret")
    found: dict[str, set[str]] = {}
    for where, pod in _pod_specs():
        for container in pod["containers"]:
            if _image_service(container["image"]) != service:
                continue
            for var in container.get("env", []):
                found.setdefault(var["name"], set()).add(where)
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    name = source["configMapRef"]["name"]
                    for key in config_maps[name]["data"]:
                        found.setdefault(key, set()).add(f"ConfigMap/{name}")
                if "secretRef" in source:
                    name = source["secretRef"]["name"]
                    for key in secrets[name].get("stringData", {}):
                        found.setdefault(key, set()).add(f"Secret/{name}")
    return found


@pytest.mark.parametrize("service", ["roster-api", "sso-gateway"])
def test_deploy_k8s_sets_only_variables_the_service_reads(service: str) -> None:
    known = _known_vars(service)
    found = _k8s_env(service)
    assert found, f"no container runs {service}"
    unknown = {name: sorted(where) for name, where in found.items() if not gen_env_docs.is_known(name, known)}
    assert not unknown, f"{service} does not read these variables: {unknown}"


@pytest.mark.parametrize("service", ["roster-api", "sso-gateway"])
def test_deploy_k8s_commands_exist(service: str) -> None:
    for where, pod in _pod_specs():
        for container in pod["containers"]:
            if _image_service(container["image"]) == service:
                _check_command(service, container.get("args", []))
                assert "command" not in container, f"{where}: keep the image's entrypoint"


# --- Compose ----------------------------------------------------------------------------------------------


def test_deploy_compose_is_valid() -> None:
    schema = json.loads((ROOT / "tests" / "schemas" / "compose-spec.json").read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    errors = [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(_compose())
    ]
    assert not errors, errors
    broken = _compose()
    broken["services"]["roster-api"]["depends_on"]["migrate"]["condition"] = "service_finished"
    assert not validator.is_valid(broken), "the compose schema check must catch a wrong condition"


def test_deploy_compose_starts_in_a_health_gated_order() -> None:
    services = _compose()["services"]
    assert {
        "postgres",
        "redis",
        "migrate",
        "roster-api",
        "roster-worker",
        "roster-sftp",
        "roster-nightly",
        "sso-gateway",
    } <= set(services)
    for name in ("postgres", "redis", "roster-api", "roster-sftp", "sso-gateway"):
        assert "healthcheck" in services[name], name
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("roster-api", "roster-worker", "roster-sftp", "roster-nightly"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["postgres"]["condition"] == "service_healthy", name
    gateway = services["sso-gateway"]["depends_on"]
    assert gateway["redis"]["condition"] == "service_healthy"
    assert gateway["roster-api"]["condition"] == "service_healthy"
    # Every condition names a service that exists, and a service_healthy one has a health check.
    for name, service in services.items():
        for other, rule in (service.get("depends_on") or {}).items():
            assert other in services, f"{name} depends on unknown {other}"
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in services[other], f"{name} waits for {other}'s health, which has none"


def test_deploy_compose_shares_the_upload_volume() -> None:
    services = _compose()["services"]
    for name in ("roster-api", "roster-worker", "roster-sftp", "roster-nightly"):
        assert "uploads:/var/lib/roster" in services[name]["volumes"], name
        assert services[name]["environment"]["ROSTER_DATA_DIR"] == "/var/lib/roster", name


def _compose_env(service: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for name, spec in _compose()["services"].items():
        image = spec.get("image") or ""
        if _image_service(image) != service:
            continue
        environment = spec.get("environment") or {}
        keys = environment if isinstance(environment, dict) else [e.split("=", 1)[0] for e in environment]
        for key in keys:
            found.setdefault(key, set()).add(name)
    return found


# Read by the libraries rather than the Settings classes: httpx takes its CA bundle from SSL_CERT_FILE.
LIBRARY_VARS = {"SSL_CERT_FILE"}


@pytest.mark.parametrize("service", ["roster-api", "sso-gateway"])
def test_deploy_compose_sets_only_variables_the_service_reads(service: str) -> None:
    known = _known_vars(service)
    found = _compose_env(service)
    assert found, f"no compose service runs {service}"
    unknown = {
        name: sorted(where)
        for name, where in found.items()
        if not gen_env_docs.is_known(name, known) and name not in LIBRARY_VARS
    }
    assert not unknown, f"{service} does not read these variables: {unknown}"


@pytest.mark.parametrize("service", ["roster-api", "sso-gateway"])
def test_deploy_compose_commands_exist(service: str) -> None:
    for spec in _compose()["services"].values():
        if _image_service(spec.get("image") or "") == service:
            for args in _shell_commands(service, spec):
                _check_command(service, args)


def test_deploy_env_var_check_catches_unknown_names() -> None:
    known = _known_vars("roster-api")
    assert gen_env_docs.is_known("ROSTER_DATABASE_URL", known)
    assert not gen_env_docs.is_known("ROSTER_DATABASE_URI", known)
    assert not gen_env_docs.is_known("DATABASE_URL", known)


# --- Dockerfiles ------------------------------------------------------------------------------------------

DOCKERFILES = sorted(DEPLOY.glob("*.Dockerfile"))


def _instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def _ignored(dockerfile: Path, source: str) -> bool:
    """BuildKit's <Dockerfile>.dockerignore: does it leave `source` out of the build context?"""
    ignore = Path(f"{dockerfile}.dockerignore")
    patterns = [
        p.strip()
        for p in ignore.read_text(encoding="utf-8").splitlines()
        if p.strip() and not p.startswith("#")
    ]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*", "[^/]*")
        if re.fullmatch(regex + "(/.*)?", source.rstrip("/")) or (
            negate and pattern.startswith(source.rstrip("/") + "/")
        ):
            excluded = not negate
    return excluded


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=[p.name for p in DOCKERFILES])
def test_deploy_dockerfile(dockerfile: Path) -> None:
    instructions = _instructions(dockerfile)
    keywords = [k for k, _ in instructions]
    assert keywords.count("FROM") >= 2, "multi-stage: build tools stay out of the runtime image"
    assert "HEALTHCHECK" in keywords
    users = [rest for k, rest in instructions if k == "USER"]
    assert users, "the runtime stage sets a USER"
    assert users[-1].split(":")[0] not in {"root", "0"}, "the runtime runs as non-root"
    pip_installs = [rest for k, rest in instructions if k == "RUN" and "pip install" in rest]
    assert pip_installs
    assert all("-c constraints.txt" in rest for rest in pip_installs)
    for keyword, rest in instructions:
        if keyword != "COPY" or "--from=" in rest:
            continue
        *sources, _target = shlex.split(rest)
        for source in sources:
            assert (ROOT / source).exists(), f"{dockerfile.name}: COPY {source}: no such file"
            assert not _ignored(dockerfile, source), (
                f"{dockerfile.name}: {source} is excluded by the dockerignore"
            )
    entrypoint = json.loads(next(rest for k, rest in instructions if k == "ENTRYPOINT"))
    service = dockerfile.name.removesuffix(".Dockerfile")
    assert entrypoint == [service]
    cmd = json.loads(next(rest for k, rest in instructions if k == "CMD"))
    _check_command(service, cmd)
    copied_healthcheck = [rest for k, rest in instructions if k == "COPY" and "healthcheck.py" in rest]
    assert copied_healthcheck, "the HEALTHCHECK script is copied into the image"


def test_deploy_dockerignore_check_works() -> None:
    dockerfile = DEPLOY / "roster-api.Dockerfile"
    assert not _ignored(dockerfile, "services/roster-api/src")
    assert _ignored(dockerfile, "services/sso-gateway/src")
    assert _ignored(dockerfile, ".venv")


# --- Docs -------------------------------------------------------------------------------------------------


def test_deploy_readme_env_tables_are_up_to_date() -> None:
    readme = DEPLOY / "README.md"
    current = readme.read_text(encoding="utf-8")
    assert gen_env_docs.render_readme(current) == current, "run `python scripts/gen_env_docs.py`"


def test_deploy_readme_lists_every_variable() -> None:
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    for service in gen_env_docs.SERVICES:
        settings_cls = gen_env_docs.load_settings(service)
        if settings_cls is None:
            continue
        for var in gen_env_docs.env_vars(settings_cls):
            assert f"`{var.name}`" in readme, var.name


# --- The settings the deploy files give actually start the services -----------------------------------

A_SECRET = "k3P9vQ2xLm7RtY4wZs8NbC6dF1gH5jJ0"


def _fill(value: str) -> str:
    return value.replace("REPLACE_ME", A_SECRET)


def _k8s_values(service: str) -> dict[str, str]:
    config_maps, secrets = _by_kind("ConfigMap"), _by_kind("Secret")
    values: dict[str, str] = {}
    for _, pod in _pod_specs():
        for container in pod["containers"]:
            if _image_service(container["image"]) != service:
                continue
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    values.update(config_maps[source["configMapRef"]["name"]]["data"])
                if "secretRef" in source:
                    values.update(secrets[source["secretRef"]["name"]]["stringData"])
            values.update({var["name"]: var["value"] for var in container.get("env", [])})
    return {name: _fill(str(value)) for name, value in values.items()}


def _env_example() -> dict[str, str]:
    pairs = {}
    for line in (DEPLOY / "env.example").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            pairs[name] = _fill(value)
    return pairs


def _interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's `${NAME}`, `${NAME:-default}` and `${NAME:?error}`."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if name in env and env[name] != "":
            return env[name]
        if op == ":?":
            raise AssertionError(f"compose would stop: {name} is required ({arg})")
        return arg or ""

    return re.sub(r"\$\{([A-Z0-9_]+)(?:(:[-?])([^}]*))?\}", one, value)


def _compose_values(name: str) -> dict[str, str]:
    env = _env_example()
    environment = _compose()["services"][name]["environment"]
    return {key: _interpolate(str(value), env) for key, value in environment.items()}


def _start_settings(service: str, values: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    for name in list(os.environ):
        if name.startswith(("ROSTER_", "SSO_")):
            monkeypatch.delenv(name)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    settings_cls = gen_env_docs.load_settings(service)
    if settings_cls is None:
        pytest.skip(f"{service} is not installed")
    return settings_cls()


def test_deploy_k8s_settings_start_roster_api_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _start_settings("roster-api", _k8s_values("roster-api"), monkeypatch)
    assert settings.environment == "production"
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert str(settings.data_dir) == "/var/lib/roster"
    assert settings.run_worker is False


def test_deploy_k8s_settings_start_the_gateway_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _start_settings("sso-gateway", _k8s_values("sso-gateway"), monkeypatch)
    assert settings.environment == "production"
    assert {p.value for p in settings.products()} == {"rocketlit", "innerorbit"}
    assert settings.redis_url is not None
    assert [str(p) for p in settings.signing_key_files] == ["/etc/sso-gateway/keys/current.pem"]
    mounts = {
        m["mountPath"]
        for m in _by_kind("Deployment")["sso-gateway"]["spec"]["template"]["spec"]["containers"][0][
            "volumeMounts"
        ]
    }
    assert all(str(path.parent) in mounts for path in settings.signing_key_files)


@pytest.mark.parametrize("name", ["migrate", "roster-api", "roster-worker", "roster-sftp", "roster-nightly"])
def test_deploy_compose_settings_start_roster_api(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _start_settings("roster-api", _compose_values(name), monkeypatch)
    assert settings.environment == "production"
    assert "@postgres:5432/roster" in settings.database_url


def test_deploy_compose_settings_start_the_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _start_settings("sso-gateway", _compose_values("sso-gateway"), monkeypatch)
    assert settings.environment == "production"
    assert {p.value for p in settings.products()} == {"rocketlit", "innerorbit"}
    assert settings.issuer == _env_example()["SSO_ISSUER"]


def test_deploy_compose_refuses_to_start_without_the_secrets() -> None:
    environment = _compose()["services"]["roster-api"]["environment"]
    with pytest.raises(AssertionError, match="POSTGRES_PASSWORD is required"):
        _interpolate(str(environment["ROSTER_DATABASE_URL"]), {})


def test_deploy_sftp_is_exposed_on_the_port_the_api_announces() -> None:
    """Credentials responses tell districts ROSTER_SFTP_PORT; the load balancer must listen there."""
    service = _by_kind("Service")["roster-sftp"]
    sftp = _by_kind("Deployment")["roster-sftp"]["spec"]["template"]["spec"]["containers"][0]
    port = int(next(v["value"] for v in sftp["env"] if v["name"] == "ROSTER_SFTP_PORT"))
    assert [p["port"] for p in service["spec"]["ports"]] == [port]
    assert "2222:2222" in _compose()["services"]["roster-sftp"]["ports"]


def test_deploy_env_var_names_follow_pydantic_settings_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    """The names gen_env_docs derives are the names pydantic-settings reads: prefix, nesting, aliases."""
    import enum

    from pydantic import BaseModel, Field, SecretStr
    from pydantic_settings import BaseSettings, SettingsConfigDict

    class Kind(enum.StrEnum):
        ALPHA = "alpha"

    class Inner(BaseModel):
        url: str
        token: SecretStr

    class Example(BaseSettings):
        model_config = SettingsConfigDict(env_prefix="EX_", env_nested_delimiter="__")
        # the port it listens on
        port: int = 80
        renamed: str = Field(default="x", validation_alias="OTHER_NAME")
        alpha: Inner | None = None
        by_kind: dict[Kind, Inner] = Field(default_factory=dict)

    names = {var.name: var for var in gen_env_docs.env_vars(Example)}
    assert names["EX_PORT"].description == "the port it listens on"
    assert names["EX_PORT"].default == "`80`"
    assert "OTHER_NAME" in names
    assert names["EX_ALPHA__TOKEN"].secret
    assert "EX_BY_KIND__ALPHA__URL" in names
    monkeypatch.setenv("EX_PORT", "81")
    monkeypatch.setenv("OTHER_NAME", "y")
    monkeypatch.setenv("EX_ALPHA__URL", "u")
    monkeypatch.setenv("EX_ALPHA__TOKEN", "t")
    loaded = Example()
    assert (loaded.port, loaded.renamed, loaded.alpha and loaded.alpha.url) == (81, "y", "u")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=[p.name for p in DOCKERFILES])
def test_deploy_dockerfile_env_is_read_by_the_service(dockerfile: Path) -> None:
    service = dockerfile.name.removesuffix(".Dockerfile")
    known = _known_vars(service)
    prefix = {"roster-api": "ROSTER_", "sso-gateway": "SSO_"}[service]
    names = [
        name
        for keyword, rest in _instructions(dockerfile)
        if keyword == "ENV"
        for name in re.findall(r"(\w+)=", rest)
        if name.startswith(prefix)
    ]
    assert f"{prefix}ENVIRONMENT" in names, "images default to production"
    unknown = [name for name in names if not gen_env_docs.is_known(name, known)]
    assert not unknown, f"{service} does not read {unknown}"


# --- Compose: the gateway reaches roster-api over TLS -----------------------------------------------------


def _load_deploy_script(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_certs = _load_deploy_script(DEPLOY / "tls" / "make_certs.py")


def _nginx() -> dict[str, Any]:
    text = (DEPLOY / "tls" / "nginx.conf").read_text(encoding="utf-8")

    def one(directive: str) -> str:
        found = re.findall(rf"^\s*{directive}\s+([^;]+);", text, re.MULTILINE)
        assert len(found) == 1, f"nginx.conf: one {directive} expected, found {found}"
        return str(found[0]).strip()

    return {
        "listen": one("listen"),
        "server_name": one("server_name"),
        "certificate": one("ssl_certificate"),
        "key": one("ssl_certificate_key"),
        "proxy_pass": one("proxy_pass"),
    }


def _mount(service: dict[str, Any], volume: str) -> tuple[str, bool]:
    """Where `service` mounts the named volume, and whether read-only."""
    for entry in service.get("volumes", []):
        parts = entry.split(":")
        if parts[0] == volume:
            return parts[1], parts[2:] == ["ro"]
    raise AssertionError(f"volume {volume} is not mounted")


def _option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_deploy_compose_tls_certificates_and_urls_line_up(monkeypatch: pytest.MonkeyPatch) -> None:
    services = _compose()["services"]
    certs, proxy, gateway, api = (
        services["tls-certs"],
        services["roster-api-tls"],
        services["sso-gateway"],
        services["roster-api"],
    )
    nginx = _nginx()
    url = _compose_values("sso-gateway")["SSO_ROSTER_API_URL"]
    scheme, _, rest = url.partition("://")
    host, _, port = rest.rstrip("/").partition(":")
    # the gateway connects over https to the proxy's name and port...
    assert scheme == "https", url
    assert host == "roster-api-tls"
    assert host in services
    assert nginx["listen"] == f"{port} ssl"
    assert port in [str(p) for p in proxy["expose"]]
    # ...whose certificate is issued for exactly that name...
    assert _option(certs["command"], "--host") == host == nginx["server_name"]
    # ...written by the job where the proxy reads it...
    out = _option(certs["command"], "--out")
    assert _mount(certs, "tls") == (out, False)
    proxy_dir, proxy_ro = _mount(proxy, "tls")
    assert proxy_ro
    assert nginx["certificate"] == f"{proxy_dir}/{make_certs.CERT}"
    assert nginx["key"] == f"{proxy_dir}/{make_certs.KEY}"
    # ...and the gateway trusts the CA that signed it (plus the public CAs, for Clever)
    gateway_dir, gateway_ro = _mount(gateway, "tls")
    assert gateway_ro
    assert gateway["environment"]["SSL_CERT_FILE"] == f"{gateway_dir}/{make_certs.BUNDLE}"
    # the proxy forwards to roster-api's own port
    assert nginx["proxy_pass"] == f"http://roster-api:{api['environment']['ROSTER_PORT']}"
    # start order: certificates, then the proxy (healthy once it answers over TLS), then the gateway
    assert proxy["depends_on"]["tls-certs"]["condition"] == "service_completed_successfully"
    assert proxy["depends_on"]["roster-api"]["condition"] == "service_healthy"
    assert gateway["depends_on"]["roster-api-tls"]["condition"] == "service_healthy"
    check = " ".join(proxy["healthcheck"]["test"])
    assert f"--resolve {host}:{port}:127.0.0.1" in check
    assert f"https://{host}:{port}/healthz" in check
    assert f"{proxy_dir}/{make_certs.CA_CERT}" in check
    # and the gateway's production settings accept that URL
    settings = _start_settings("sso-gateway", _compose_values("sso-gateway"), monkeypatch)
    assert settings.roster_api_url == url


def test_deploy_compose_tls_certificates_work_for_a_real_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job's files for real: a TLS server with the issued certificate, and the gateway's client (its
    lean transport, httpx's default verification and SSL_CERT_FILE) trusting the bundle: the name matches,
    another name does not, and public CAs are still in the bundle."""
    import threading

    import httpx
    import uvicorn

    host = _option(_compose()["services"]["tls-certs"]["command"], "--host")
    assert make_certs.make(tmp_path, host) is True
    assert make_certs.make(tmp_path, host) is False  # kept on a restart
    assert oct((tmp_path / make_certs.KEY).stat().st_mode & 0o777) == "0o600"
    bundle = (tmp_path / make_certs.BUNDLE).read_text(encoding="ascii")
    assert bundle.count("BEGIN CERTIFICATE") > 100  # the public CAs stay trusted

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        ssl_certfile=str(tmp_path / make_certs.CERT),
        ssl_keyfile=str(tmp_path / make_certs.KEY),
        log_config=None,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(200):
            if server.started:
                break
            threading.Event().wait(0.05)
        assert server.started
        port = server.servers[0].sockets[0].getsockname()[1]
        url = f"https://127.0.0.1:{port}/healthz"
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        with pytest.raises(httpx.ConnectError):
            asyncio.run(_gateway_get(url, host))  # without the bundle: untrusted
        monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / make_certs.BUNDLE))  # as compose sets it
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            assert asyncio.run(_gateway_get(url, host)) == "ok"
            gc.collect()  # a TLS connection the client left half-closed warns when collected
        assert not [w for w in caught if issubclass(w.category, ResourceWarning)], caught
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            asyncio.run(_gateway_get(url, "roster-api"))  # not the SAN
    finally:
        server.should_exit = True
        thread.join(10)


async def _gateway_get(url: str, server_name: str) -> str:
    """A GET as the gateway's clients make it: its lean transport with httpx's default verification."""
    import httpx

    from roster_shared.transport import LeanTransport

    async with httpx.AsyncClient(transport=LeanTransport()) as client:
        return (await client.get(url, extensions={"sni_hostname": server_name})).text


@pytest.mark.parametrize("where", ["compose", "k8s"])
def test_deploy_console_login_with_clever_is_configured_on_both_sides(
    where: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """roster-api's console client settings name the gateway's `console` client: same issuer, client
    id and redirect URI (the secrets are both REPLACE_ME here, to be filled with one value)."""
    values = _compose_values if where == "compose" else _k8s_values
    gateway = _start_settings("sso-gateway", values("sso-gateway"), monkeypatch)
    consoles = [c for conf in gateway.products().values() for c in conf.clients if c.console]
    roster = _start_settings("roster-api", values("roster-api"), monkeypatch)
    assert roster.console_oidc_enabled
    assert roster.console_oidc_issuer == gateway.issuer
    assert [c.client_id for c in consoles] == [roster.console_oidc_client_id]
    assert roster.console_oidc_redirect_uri in consoles[0].redirect_uris
    assert consoles[0].client_secret is not None
    assert (
        consoles[0].client_secret.get_secret_value() == roster.console_oidc_client_secret.get_secret_value()
    )
