"""`demo-frontend serve [--host H] [--port P]`; every other setting is a DEMO_ environment variable."""

from __future__ import annotations

import argparse
import logging
import sys

from pydantic import ValidationError


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="demo-frontend", description="Demo RocketLit/InnerOrbit frontend")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run one product's demo frontend (settings from DEMO_* variables)")
    serve.add_argument("--host", help="bind address (DEMO_HOST)")
    serve.add_argument("--port", type=int, help="port (DEMO_PORT)")
    args = parser.parse_args(argv)

    import uvicorn

    from demo_frontend.app import create_app
    from demo_frontend.settings import Settings

    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"demo-frontend: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    uvicorn.run(
        create_app(settings),
        host=args.host or settings.host,
        port=args.port if args.port is not None else settings.port,
        access_log=False,
        log_config=None,
    )
