"""The kept copy's quote-free fast paths (formats/scrub.py) cut exactly what the csv module would:
column by column when every line is alike, line by line otherwise, the csv module with quotes."""

from __future__ import annotations

import csv
import io

import pytest

from roster_api.importing.formats.scrub import keep_columns


def _csv_keep_columns(data: bytes, keep: tuple[str, ...]) -> bytes:
    rows = csv.reader(io.StringIO(data.decode(), newline=""), strict=False)
    header = next(rows, [])
    indexes = [i for i, name in enumerate(header) if name in keep]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([header[i] for i in indexes])
    for row in rows:
        writer.writerow([row[i] if i < len(row) else "" for i in indexes])
    return out.getvalue().encode()


@pytest.mark.parametrize(
    "data",
    [
        b"id,secret,name\r\n1,x,Ann\r\n2,y,Bob\r\n",  # every line alike: cut column by column
        b"id,secret,name\r1,x,Ann\r2,y,Bob",  # CR-only line ends, no last line end
        b"id,secret,name\n1,x,Ann\n\n2,y,Bob\n",  # a blank line: line by line
        b"id,secret,name\n1,x\n2,y,Bob,extra\n",  # short and long rows
        b"id,secret,name\n1,x,Ann,\n2,y,Bob,\n",  # one more value than the header on every line
        b"id,secret,name\n",  # header only
        b'id,secret,name\n1,"x, y",Ann\n',  # quoted: the csv module
    ],
)
@pytest.mark.parametrize("keep", [("id", "name"), ("id", "secret"), ("name",)])  # ("id", "secret"): the first
def test_the_kept_columns_are_what_the_csv_module_would_keep(data: bytes, keep: tuple[str, ...]) -> None:
    assert keep_columns(data, keep) == _csv_keep_columns(data, keep)
