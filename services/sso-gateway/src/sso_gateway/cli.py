"""`sso-gateway serve [--host H] [--port P]`; every other setting is an SSO_ environment variable."""

from __future__ import annotations

import argparse
import sys

from pydantic import ValidationError


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="sso-gateway", description="Log in with Clever; OIDC provider")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the gateway (settings from SSO_* variables)")
    serve.add_argument("--host", help="bind address (SSO_HOST)")
    serve.add_argument("--port", type=int, help="port (SSO_PORT)")
    args = parser.parse_args(argv)

    import uvicorn

    from sso_gateway.keys import SigningKeyError
    from sso_gateway.main import create_app
    from sso_gateway.settings import Settings

    try:
        settings = Settings()
        app = create_app(settings)
    except (ValidationError, ValueError, SigningKeyError) as exc:
        print(f"sso-gateway: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    uvicorn.run(
        app,
        host=args.host or settings.host,
        port=args.port if args.port is not None else settings.port,
        access_log=False,
        log_config=None,
        proxy_headers=False,
    )
