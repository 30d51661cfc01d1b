"""The console's routes, all under /console."""

from __future__ import annotations

from fastapi import APIRouter

from roster_api.console import auth_pages, imports_pages, roster_pages, settings_pages

router = APIRouter(prefix="/console")
for module in (auth_pages, imports_pages, roster_pages, settings_pages):
    router.include_router(module.router)
