"""`clever-sim serve [--host H] [--port P] [--config seed.json] [--roster CLEVER_DISTRICT_ID=FILE.csv]
[--app CLIENT_ID:SECRET:REDIRECT_URI[,REDIRECT_URI...]:NAME]` (NAME required).
A development and test tool only."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from clever_sim.seed import Seed, SimApp, load_config, load_roster


def build_seed(config: Path | None, rosters: list[str], apps: list[str]) -> Seed:
    seed = Seed()
    if config is not None:
        load_config(seed, config)
    for spec in rosters:
        district_id, sep, path = spec.partition("=")
        if not sep:
            raise SystemExit(f"--roster wants CLEVER_DISTRICT_ID=FILE.csv, got {spec!r}")
        text = Path(path).read_text(encoding="utf-8-sig")
        load_roster(seed, text, district_id=district_id, district_name=Path(path).stem)
    for spec in apps:
        parts = spec.split(":", 2)
        if len(parts) != 3:
            raise SystemExit("--app wants CLIENT_ID:SECRET:REDIRECT_URI[,URI...]:NAME")
        client_id, secret, rest = parts
        uris, _, name = rest.rpartition(":")
        if not uris or not name or "/" in name:
            raise SystemExit("--app wants CLIENT_ID:SECRET:REDIRECT_URI[,URI...]:NAME (NAME is required)")
        seed.add_app(SimApp(client_id, secret, uris.split(","), name))
    return seed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="clever-sim", description="Clever simulator (development only)")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the simulator")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8200)
    serve.add_argument("--config", type=Path, help="JSON seed file (districts, users, apps)")
    serve.add_argument("--roster", action="append", default=[], help="CLEVER_DISTRICT_ID=roster.csv")
    serve.add_argument("--app", action="append", default=[], help="CLIENT_ID:SECRET:URI[,URI]:NAME")
    args = parser.parse_args(argv)
    try:
        seed = build_seed(args.config, args.roster, args.app)
    except (OSError, ValueError, KeyError) as exc:
        print(f"clever-sim: cannot load the seed: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc

    import uvicorn

    from clever_sim.app import create_app

    uvicorn.run(create_app(seed), host=args.host, port=args.port, access_log=False)
