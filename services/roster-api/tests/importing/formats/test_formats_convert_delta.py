"""The converter writes what an import would see as one v1 CSV; a OneRoster delta is a patch on the
current roster (tobedeleted removes, absence changes nothing)."""

from __future__ import annotations

import io
from pathlib import Path

import typer
from typer.testing import CliRunner

from roster_api.importing.formats import oneroster, read_files, read_upload
from roster_api.importing.formats.cli import convert
from roster_api.importing.formats.delta import snapshot, snapshot_user
from roster_api.importing.normalize import normalize
from roster_api.importing.parse import parse_bytes

from .helpers import files_of, problems, view, zip_bytes


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.command()(convert)
    app.command("noop")(lambda: None)  # more than one command: `convert` is a subcommand, as in roster-api
    return app


def test_convert_writes_a_v1_csv_that_imports_as_the_same_roster(tmp_path: Path) -> None:
    source = tmp_path / "oneroster.zip"
    source.write_bytes(zip_bytes(files_of("oneroster12")))
    out = tmp_path / "district.csv"
    result = CliRunner().invoke(_cli(), ["convert", str(source), "--to", "v1", str(out)])
    assert result.exit_code == 0, result.output
    written = out.read_bytes()
    assert b"Hunter2-secret" not in written
    assert b"2018-02-14" not in written
    again = normalize(parse_bytes(written))
    assert not again.errors, problems(again)
    original = read_upload(io.BytesIO(source.read_bytes()))
    assert original is not None
    assert view(again) == view(original)


def test_convert_refuses_a_file_with_errors_and_writes_nothing(tmp_path: Path) -> None:
    files = files_of("clever2")
    files["enrollments.csv"] += b"sch-1,C1,S404\n"
    source = tmp_path / "clever.zip"
    source.write_bytes(zip_bytes(files))
    out = tmp_path / "district.csv"
    result = CliRunner().invoke(_cli(), ["convert", str(source), str(out)])
    assert result.exit_code == 1
    assert "UNKNOWN_REFERENCE enrollments.csv:8:Student_id" in result.output
    assert not out.exists()


def _current() -> oneroster.Package:
    """The fixture district as stored after its bulk import."""
    bulk = read_upload(io.BytesIO(zip_bytes(files_of("oneroster11"))))
    assert bulk is not None
    users = {}
    for role, people in (("teacher", bulk.teachers), ("student", bulk.students)):
        for person in people.values():
            assert person.sis_id is not None
            users[person.sis_id] = snapshot_user(
                person.sis_id, role, person.first_name, person.last_name, person.email, person.grade
            )
    links = [(c, bulk.teachers[k].sis_id or "", "teacher") for c, k in bulk.class_teachers]
    links += [(c, bulk.students[k].sis_id or "", "student") for c, k in bulk.enrollments]
    return snapshot(
        {k: v.name for k, v in bulk.schools.items()},
        {k: (v.school_id, v.name) for k, v in bulk.classes.items()},
        users,
        links,
    )


DELTA_MANIFEST = b"""propertyName,value
manifest.version,1.0
oneroster.version,1.1
file.users,delta
file.enrollments,delta
file.orgs,absent
file.classes,absent
"""
USERS_HEADER = (
    b"sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,userIds,givenName,familyName,"
    b"middleName,identifier,email,sms,phone,agentSourcedIds,grades,password\n"
)
ENROLLMENTS_HEADER = (
    b"sourcedId,status,dateLastModified,classSourcedId,schoolSourcedId,userSourcedId,role,primary,beginDate,"
    b"endDate\n"
)


def test_a_delta_changes_only_what_it_lists() -> None:
    delta = {
        "manifest.csv": DELTA_MANIFEST,
        "users.csv": USERS_HEADER
        + b"S5,tobedeleted,2026-12-01T00:00:00Z,true,sch-2,student,bpoe,,Bob,Poe,,,,,,,12,\n"
        + b"S3,active,2026-12-01T00:00:00Z,true,sch-2,student,jdoe,,Janet,Doe,,,"
        + b"jane.doe@springfield.example.org,,,,10,\n"
        + b"S6,active,2026-12-01T00:00:00Z,true,sch-2,student,new,,New,Kid,,,,,,,09,\n",
        "enrollments.csv": ENROLLMENTS_HEADER
        + b"E20,active,2026-12-01T00:00:00Z,C3,sch-2,S6,student,,,\n"
        + b"E7,tobedeleted,2026-12-01T00:00:00Z,C2,sch-2,S4,student,,,\n",
    }
    roster = read_files(delta, current=_current)
    assert not roster.errors, problems(roster)
    assert roster.file_info() == {"format": "oneroster", "version": "1.1", "mode": "delta"}
    got = view(roster)
    assert ("S5", "bob.poe@springfield.example.org", "Bob", "Poe", "12") not in got["students"]  # type: ignore[operator]
    assert ("S3", "jane.doe@springfield.example.org", "Janet", "Doe", "10") in got["students"]  # type: ignore[operator]
    assert ("S6", None, "New", "Kid", "9") in got["students"]  # type: ignore[operator]
    assert got["enrollments"] == {("C1", "S1"), ("C1", "S2"), ("C2", "S3"), ("C3", "S4"), ("C3", "S6")}
    # not listed, not changed
    assert got["class_teachers"] == {("C1", "T1"), ("C2", "T2"), ("C2", "T3"), ("C3", "T3")}
    assert got["schools"] == {"sch-1": "Lincoln Elementary", "sch-2": "Roosevelt High"}


def test_a_delta_without_a_district_is_refused() -> None:
    roster = read_files(
        {"manifest.csv": DELTA_MANIFEST, "users.csv": USERS_HEADER, "enrollments.csv": ENROLLMENTS_HEADER}
    )
    assert roster.errors


def test_a_manifest_only_zip_changes_nothing() -> None:
    manifest = b"propertyName,value\nmanifest.version,1.0\noneroster.version,1.1\nfile.users,delta\n"
    manifest = manifest.replace(b"file.users,delta", b"file.users,absent")
    roster = read_files({"manifest.csv": manifest}, current=_current)
    assert not roster.errors, problems(roster)
    bulk = read_files(files_of("oneroster11"))
    assert view(roster) == view(bulk)
