"""/docs and /redoc load every asset from the service itself (no CDN), so they work offline."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient


@pytest.fixture
def database_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "roster.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_use_only_local_assets(browser: TestClient, page: str) -> None:
    response = browser.get(page)
    assert response.status_code == 200
    urls = re.findall(r'(?:src|href)="([^"]+)"', response.text)
    urls += re.findall(r"url: ?'([^']+)'", response.text)
    assert urls
    for url in urls:
        assert url.startswith("/"), f"{page} loads {url} from elsewhere"
        if url.startswith("/docs-assets/"):
            asset = browser.get(url)
            assert asset.status_code == 200, url
            assert len(asset.content) > 1000
    assert "fonts.googleapis" not in response.text
    assert "cdn.jsdelivr" not in response.text
    assert browser.get("/openapi.json").status_code == 200
    assert browser.get("/docs-assets/../settings.py").status_code == 404
