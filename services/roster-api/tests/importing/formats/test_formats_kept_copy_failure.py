"""A kept package whose copy cannot be reduced to what we read is not kept at all: the upload holds
passwords, birth dates and contacts, which are never stored. Only the kind of error is logged."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from roster_api.importing.formats import stored


def test_a_kept_copy_that_cannot_be_reduced_is_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    upload = tmp_path / "imp_1.zip"
    upload.write_bytes(b"PK\x03\x04 the original upload, Password column and all")

    def broken(files: object, out: object) -> bool:
        raise ValueError("secret-student-value")

    monkeypatch.setattr(stored, "scrub_files", broken)
    with caplog.at_level(logging.WARNING):
        stored.keep_only_what_is_read(upload, {"users.csv": b"sourcedId,password\n1,hunter2\n"})
    assert not upload.exists()
    assert list(tmp_path.iterdir()) == []  # nor a partial copy
    [record] = caplog.records
    assert record.fields == {"error": "ValueError"}  # type: ignore[attr-defined]
    assert "secret-student-value" not in caplog.text
