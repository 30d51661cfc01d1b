"""Reads a zip upload without extracting anything to disk. Every member is checked from the central
directory first (names, kinds, count, declared sizes and ratios), then read into memory with the same
limits enforced on the bytes that really come out (a member may lie about its size)."""

from __future__ import annotations

import io
import stat
import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import BinaryIO

ZIP_MAGIC = b"PK\x03\x04"
EMPTY_ZIP_MAGIC = b"PK\x05\x06"
MAX_MEMBERS = 20
MAX_TOTAL_BYTES = 2 << 30  # uncompressed, all members together
MAX_RATIO = 200  # uncompressed / compressed, per member (CSV deflates 5-20x; bombs 1000x and more)
RATIO_FLOOR = 1 << 20  # members smaller than this are not held to the ratio
# what archivers add on their own; skipped, never read
_NOISE_PREFIXES = ("__MACOSX/",)
_NOISE_NAMES = {".DS_Store", "Thumbs.db", "desktop.ini"}
_READ = 1 << 20


class UnsafeZip(Exception):
    """The zip is refused as a whole; the message says why (it names the member)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass(frozen=True)
class Members:
    files: dict[str, bytes]  # base name -> content
    folder: str | None  # the one folder every file sat in, when the zip had one


def is_zip(head: bytes) -> bool:
    return head.startswith((ZIP_MAGIC, EMPTY_ZIP_MAGIC))


def _check_name(info: zipfile.ZipInfo) -> None:
    name = info.filename
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafeZip(f"The zip member {name!r} has an absolute path.", "Zip the files themselves.")
    if "\\" in name or ".." in PurePosixPath(name).parts:
        raise UnsafeZip(
            f"The zip member {name!r} points outside the zip ('..').", "Zip the files themselves."
        )
    mode = info.external_attr >> 16
    if info.create_system == 3 and stat.S_ISLNK(mode):
        raise UnsafeZip(f"The zip member {name!r} is a symbolic link.", "Zip the files themselves.")
    if info.flag_bits & 0x1:
        raise UnsafeZip(f"The zip member {name!r} is encrypted.", "Zip the files without a password.")
    if name.lower().endswith((".zip", ".jar", ".7z", ".gz", ".tar", ".rar")):
        raise UnsafeZip(
            f"The zip member {name!r} is an archive inside the zip.", "Put the CSV files in one zip."
        )


def _is_noise(name: str) -> bool:
    return name.startswith(_NOISE_PREFIXES) or PurePosixPath(name).name in _NOISE_NAMES


def read_members(source: BinaryIO, *, max_total: int = MAX_TOTAL_BYTES) -> Members:
    """The files of the zip by base name. Raises UnsafeZip (nothing read yet) or, for a zip that
    cannot be read at all, UnsafeZip too."""
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise UnsafeZip(f"The zip cannot be read ({exc}).", "Create the zip again.") from exc
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_MEMBERS:
            raise UnsafeZip(
                f"The zip has {len(infos)} entries; at most {MAX_MEMBERS} are accepted.",
                "Send only the roster files.",
            )
        wanted: list[zipfile.ZipInfo] = []
        total = 0
        for info in infos:
            _check_name(info)
            if info.is_dir() or _is_noise(info.filename):
                continue
            total += info.file_size
            if info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * max(info.compress_size, 1):
                ratio = info.file_size // max(info.compress_size, 1)
                raise UnsafeZip(
                    f"The zip member {info.filename!r} would expand {ratio} times; at most {MAX_RATIO} is "
                    "accepted."
                )
            wanted.append(info)
        if total > max_total:
            raise UnsafeZip(f"The zip would expand to {total} bytes; at most {max_total} are accepted.")
        folders = {str(PurePosixPath(i.filename).parent) for i in wanted}
        if len(folders) > 1 or any(f.count("/") for f in folders):
            raise UnsafeZip(
                "The zip has files in several folders.",
                "Put the CSV files at the top of the zip (or all in one folder).",
            )
        files: dict[str, bytes] = {}
        budget = max_total
        for info in wanted:
            data = _read(archive, info, budget)
            budget -= len(data)
            base = PurePosixPath(info.filename).name
            if base in files:
                raise UnsafeZip(f"The zip has {base!r} twice.")
            if data.startswith((ZIP_MAGIC, EMPTY_ZIP_MAGIC)):
                raise UnsafeZip(f"The zip member {info.filename!r} is a zip inside the zip.")
            files[base] = data
        folder = next(iter(folders), ".")
        return Members(files, None if folder == "." else folder)


def _read(archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: int) -> bytes:
    """The member's bytes, stopped as soon as it gives more than it declared or than the budget."""
    limit = min(info.file_size, budget)
    out = io.BytesIO()
    try:
        with archive.open(info) as member:
            while chunk := member.read(_READ):
                out.write(chunk)
                if out.tell() > limit:
                    raise UnsafeZip(f"The zip member {info.filename!r} is larger than it declares.")
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
        raise UnsafeZip(f"The zip member {info.filename!r} cannot be read ({exc}).") from exc
    return out.getvalue()
