"""Preview over SFTP: a file uploaded under a name ending in `.preview.csv` (say `roster.preview.csv`)
is a dry run. It is checked and compared with the roster, its results (and changes) come back in
`results/` like any upload's, and nothing is applied, whatever the district's `import_on_upload`. The
nightly re-sync never takes a preview file."""

from __future__ import annotations

PREVIEW_SUFFIX = ".preview.csv"


def is_preview(file_name: str) -> bool:
    return file_name.lower().endswith(PREVIEW_SUFFIX)
