"""Container health check for both images, without curl in the image.

One image runs several roster-api processes, so the check depends on the command PID 1 runs: `serve` and
the gateway answer GET /healthz, `sftp` must accept TCP connections, and `worker`, `nightly` and `migrate`
are healthy while they run (they have no port; a crash ends the container instead).
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.request
from pathlib import Path


def _command() -> list[str]:
    try:
        raw = Path("/proc/1/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _http_ok(port: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _tcp_ok(port: str) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", int(port)), timeout=3):
            return True
    except OSError:
        return False


def main() -> int:
    args = _command()
    words = {Path(arg).name for arg in args}
    if "sso-gateway" in words:
        return 0 if _http_ok(os.environ.get("SSO_PORT", "8100")) else 1
    if "sftp" in words:
        return 0 if _tcp_ok(os.environ.get("ROSTER_SFTP_PORT", "2222")) else 1
    if "serve" in words:
        return 0 if _http_ok(os.environ.get("ROSTER_PORT", "8000")) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
