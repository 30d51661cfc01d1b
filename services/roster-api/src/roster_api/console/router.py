"""The console's routes, all under /console."""

from __future__ import annotations

from fastapi import APIRouter

from roster_api.console import (
    auth_pages,
    clever_login,
    imports_pages,
    keys_pages,
    resolve,
    roster_pages,
    settings_pages,
)

pages = APIRouter(prefix="/console")
for module in (auth_pages, clever_login, imports_pages, keys_pages, roster_pages, settings_pages):
    pages.include_router(module.router)
# last: any other /console address is the console's own 404 page (after sign-in), not the API's JSON
pages.include_router(auth_pages.not_found_router)

router = APIRouter()
router.include_router(pages)
# the API route the gateway's console client calls (a key with the `resolve` scope, like /v1/resolve)
router.include_router(resolve.router)
