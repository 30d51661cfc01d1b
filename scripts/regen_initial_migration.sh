#!/usr/bin/env bash
# Pre-release only: rewrites the single initial migration from models.py, so the first release ships
# one clean revision. Once a release is deployed, add revisions with `alembic revision --autogenerate`.
set -euo pipefail
cd "$(dirname "$0")/../services/roster-api"
rm -rf var && mkdir -p var
rm -f src/roster_api/migrations/versions/*_0001_initial.py
../../.venv/bin/alembic -c alembic.ini revision --autogenerate --rev-id 0001 -m initial
rm -rf var
../../.venv/bin/ruff format src/roster_api/migrations/versions >/dev/null
