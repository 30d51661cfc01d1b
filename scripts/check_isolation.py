"""Installs each package into a virtualenv of its own and imports every module, so an import that a
package never declared fails here instead of in production."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# package dir -> (import name, local dependencies installed first)
PACKAGES = {
    "shared": ("roster_shared", []),
    "services/roster-api": ("roster_api", ["shared"]),
    "services/sso-gateway": ("sso_gateway", ["shared"]),
    "services/clever-sim": ("clever_sim", []),
    "services/demo-frontend": ("demo_frontend", []),
    "harness": ("roster_harness", []),
}
SKIP_MODULES = ("migrations.versions",)


def main() -> int:
    failed = []
    for package, (module, local_deps) in PACKAGES.items():
        if not (ROOT / package / "pyproject.toml").exists():
            continue
        with tempfile.TemporaryDirectory() as tmp:
            venv = Path(tmp) / "venv"
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            python = str(venv / "bin" / "python")
            pip = [python, "-m", "pip", "install", "--quiet", "-c", str(ROOT / "constraints.txt")]
            targets = [str(ROOT / dep) for dep in local_deps] + [str(ROOT / package)]
            subprocess.run([*pip, *targets], check=True)
            code = (
                "import importlib, pkgutil, sys\n"
                f"pkg = importlib.import_module({module!r})\n"
                "for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
                f"    if any(s in info.name for s in {SKIP_MODULES!r}): continue\n"
                "    importlib.import_module(info.name)\n"
                "print('ok', pkg.__name__)\n"
            )
            result = subprocess.run([str(venv / "bin" / "python"), "-c", code], cwd=tmp, check=False)
            if result.returncode != 0:
                failed.append(package)
    if failed:
        print("packages that do not import on their own:", ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
