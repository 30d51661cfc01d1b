"""A zip upload is checked before anything is read out of it, and nothing is ever extracted to disk:
dangerous zips are refused with the member named; look-alike formats are refused by name."""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import pytest

from roster_api.importing.formats import read_upload
from roster_api.importing.formats.safezip import UnsafeZip, read_members
from roster_api.importing.formats.scrub import scrub_package

from .helpers import DATA, files_of, problems, view, zip_bytes


def _zip(entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for info, data in entries:
            archive.writestr(info, data)
    return out.getvalue()


def _refusal(data: bytes) -> str:
    roster = read_upload(io.BytesIO(data))
    assert roster is not None
    found = problems(roster)
    assert [p["code"] for p in found] == ["UNSAFE_ZIP"], found
    return str(found[0]["message"])


def _symlink() -> zipfile.ZipInfo:
    info = zipfile.ZipInfo("users.csv")
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize(
    ("entries", "says"),
    [
        ([("/etc/users.csv", b"x")], "absolute path"),
        ([("C:/users.csv", b"x")], "absolute path"),
        ([("../users.csv", b"x")], "outside the zip"),
        ([("a/../../users.csv", b"x")], "outside the zip"),
        ([(_symlink(), b"/etc/passwd")], "symbolic link"),
        ([("inner.zip", b"PK\x03\x04...")], "archive inside"),
        ([("users.csv", zip_bytes({"x.csv": b"a"}))], "zip inside the zip"),
        ([(f"f{n}.csv", b"a") for n in range(21)], "21 entries"),
        ([("a/users.csv", b"x"), ("b/orgs.csv", b"x")], "several folders"),
    ],
)
def test_dangerous_zips_are_refused_naming_why(
    entries: list[tuple[zipfile.ZipInfo | str, bytes]], says: str
) -> None:
    assert says in _refusal(_zip(entries))


def test_a_zip_bomb_is_refused_from_its_directory_before_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    bomb = _zip([("users.csv", b"0" * (8 << 20))])  # ~1000x
    read = []
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda *a, **k: read.append(a))
    assert "would expand" in _refusal(bomb)
    assert read == []  # refused from the central directory: no member was opened


def test_the_total_size_limit_holds(tmp_path: Path) -> None:
    data = zip_bytes({"a.csv": b"x" * 5000, "b.csv": b"y" * 5000}, compression=zipfile.ZIP_STORED)
    with pytest.raises(UnsafeZip, match="expand to 10000 bytes"):
        read_members(io.BytesIO(data), max_total=9000)
    assert list(tmp_path.iterdir()) == []


def test_a_member_that_lies_about_its_size_is_refused() -> None:
    data = bytearray(_zip([("users.csv", b"sourcedId\n" + b"a\n" * 1000)]))
    # shrink the declared size in the central directory: the member gives more than it declares
    central = data.rfind(b"PK\x01\x02")
    data[central + 24 : central + 28] = (10).to_bytes(4, "little")
    assert "users.csv" in _refusal(bytes(data))


def test_a_zip_in_one_folder_and_archiver_noise_are_read() -> None:
    files = {f"export/{name}": data for name, data in files_of("clever2").items()}
    files["__MACOSX/export/._schools.csv"] = b"\x00\x05junk"
    files[".DS_Store"] = b"\x00junk"
    roster = read_upload(io.BytesIO(zip_bytes(files)))
    assert roster is not None
    assert not roster.errors, problems(roster)
    assert len(roster.students) == 5


def test_a_zip_that_is_not_a_zip_is_refused() -> None:
    assert "cannot be read" in _refusal(b"PK\x03\x04 this is not really a zip")


def test_a_zip_holding_one_v1_csv_is_read_as_v1() -> None:
    roster = read_upload(io.BytesIO(zip_bytes({"roster.csv": (DATA / "v1.csv").read_bytes()})))
    assert roster is not None
    assert not roster.errors
    assert roster.file_info()["format"] == "v1"
    assert len(roster.students) == 5


@pytest.mark.parametrize(
    ("files", "says"),
    [
        ({"School.csv": b"SIS ID,Name\n", "Student.csv": b"SIS ID,School SIS ID\n"}, "School Data Sync"),
        (
            {"orgs.csv": b"sourcedId\n", "users.csv": b"sourcedId\n", "relationships.csv": b"x\n"},
            "School Data Sync",
        ),
        ({"orgs.csv": b"sourcedId\n", "users.csv": b"sourcedId\n", "classes.csv": b"x\n"}, "OneRoster 1.0"),
        ({"a.txt": b"x", "b.txt": b"y"}, "no roster format"),
    ],
)
def test_look_alike_packages_are_refused_by_name(files: dict[str, bytes], says: str) -> None:
    roster = read_upload(io.BytesIO(zip_bytes(files)))
    assert roster is not None
    assert [p["code"] for p in problems(roster)] == ["UNSUPPORTED_FORMAT"]
    assert says in str(problems(roster)[0]["message"])


@pytest.mark.parametrize(
    ("header", "says"),
    [
        (b"SIS ID,School SIS ID,Username,First Name,Last Name\n", "School Data Sync"),
        (b"\xef\xbb\xbfsourcedId,status,dateLastModified,enabledUser\n", "OneRoster"),
        (b"School_id,Student_id,Last_name,First_name\n", "Clever's students.csv"),
        (b"School_id,Section_id,Student_id\r", "Clever's enrollments.csv"),
        (b"user_id,login_id,first_name,last_name,status\n", "Canvas"),
    ],
)
def test_a_single_look_alike_csv_is_refused_by_name(header: bytes, says: str) -> None:
    roster = read_upload(io.BytesIO(header + b"a,b,c,d\n"))
    assert roster is not None
    assert says in str(problems(roster)[0]["message"])


@pytest.mark.parametrize("package", ["oneroster11", "oneroster12", "clever2", "clever1"])
def test_the_kept_copy_has_only_what_is_read_and_reads_the_same(package: str) -> None:
    original = zip_bytes(files_of(package))
    kept = scrub_package(original)
    assert kept is not None
    for secret in (
        b"Hunter2-secret",
        b"2018-02-14",
        b"2/14/18",
        b"mom@home.example.org",
        b"555-0199",
        b"Mr Perlstein",
    ):
        assert secret not in kept
        with zipfile.ZipFile(io.BytesIO(kept)) as archive:
            assert all(secret not in archive.read(name) for name in archive.namelist())
    before, after = read_upload(io.BytesIO(original)), read_upload(io.BytesIO(kept))
    assert before is not None
    assert after is not None
    assert not after.errors, problems(after)
    assert view(after) == view(before)
    assert scrub_package((DATA / "v1.csv").read_bytes()) is None
