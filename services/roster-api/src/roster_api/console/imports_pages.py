"""Overview, imports (history, one import, its progress, errors, decisions) and the upload with preview."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, BackgroundTasks, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from python_multipart.multipart import parse_options_header
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from roster_api.auth import Principal, Scope
from roster_api.console import sessions
from roster_api.console.readiness import readiness
from roster_api.console.sessions import ConsoleSession
from roster_api.console.web import (
    PAGE_SIZE,
    ConsoleDep,
    ConsoleRoute,
    CsrfRejected,
    DistrictDep,
    FormDep,
    redirect,
    render,
)
from roster_api.deps import EngineDep, SessionDep, SettingsDep
from roster_api.errors import Conflict, Invalid, NotFound
from roster_api.importing import changes as changes_mod
from roster_api.importing import service as imports
from roster_api.importing import uploads
from roster_api.importing.router import _MultipartFile
from roster_api.importing.schemas import ImportStatus
from roster_api.models import District, ImportRun
from roster_shared.errors import ErrorCode

router = APIRouter(route_class=ConsoleRoute)

ImportId = Annotated[str, PathParam(max_length=64)]
STATUS_TONE = {
    "applied": "ok",
    "validated": "ok",
    "skipped": "neutral",
    "queued": "info",
    "running": "info",
    "held": "warn",
    "rejected": "bad",
    "failed": "bad",
    "discarded": "neutral",
    "superseded": "neutral",
    "expired": "neutral",
}
# What a redirect says while the import is under way; a page that opens on an ended import (it ran, or
# was held, before the page first loaded) leaves these out, the status says what happened.
IMPORTING = "Importing the file."
CHECKING = "Checking the file: nothing changes until you apply it."
APPLYING = "Applying the previewed file."
APPROVED = "Approved: the import is applied shortly."
UNDER_WAY_NOTICES = frozenset({IMPORTING, CHECKING, APPLYING, APPROVED})
ENTITIES = ("schools", "classes", "teachers", "students", "enrollments", "accounts")


@router.get("/d/{district_id}", include_in_schema=False)
def overview(
    request: Request, district: DistrictDep, session: SessionDep, background: BackgroundTasks
) -> Response:
    return render(
        request,
        "overview.html",
        {
            "title": "Overview",
            "district": district,
            "nav": "overview",
            "r": readiness(session=session, district=district, later=background.add_task),
            "tone": STATUS_TONE,
        },
    )


@router.get("/d/{district_id}/imports", include_in_schema=False)
def import_list(
    request: Request,
    district: DistrictDep,
    session: SessionDep,
    status: ImportStatus | None = None,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> Response:
    rows, total = imports.list_imports(
        session=session,
        district_id=district.id,
        limit=PAGE_SIZE,
        offset=offset,
        status=status.value if status else None,
    )
    return render(
        request,
        "imports.html",
        {
            "title": "Imports",
            "district": district,
            "nav": "imports",
            "rows": rows,
            "total": total,
            "offset": offset,
            "limit": PAGE_SIZE,
            "status": status.value if status else "",
            "statuses": [s.value for s in ImportStatus],
            "tone": STATUS_TONE,
        },
    )


def _run(session: Session, district: District, import_id: str) -> ImportRun:
    run = session.get(ImportRun, import_id) if len(import_id) <= 32 else None
    if run is None or run.district_id != district.id:
        raise imports.import_not_found(import_id)
    return run


def _chart(report: dict[str, Any]) -> list[dict[str, Any]]:
    changes = report.get("changes") or {}
    rows: list[dict[str, Any]] = []
    for entity in ENTITIES:
        counts = changes.get(entity)
        if not isinstance(counts, dict):
            continue
        numbers = {k: int(v) for k, v in counts.items() if isinstance(v, int) and k != "unchanged"}
        rows.append({"entity": entity, "counts": numbers, "total": sum(numbers.values())})
    top = max((int(r["total"]) for r in rows), default=0) or 1
    for r in rows:
        total = int(r["total"])
        r["width"] = 0 if not total else max(2, round(50 * total / top) * 2)
    return rows


MAX_VALUES_FILE_BYTES = 20 * 1024 * 1024
SHOWN_ERRORS = 200


def _row_values(run: ImportRun, report: dict[str, Any]) -> dict[int, dict[str, str]]:
    """The values of the rows the shown errors point to, read back from the stored upload (while kept,
    and when small enough to read on a page view); the report itself keeps no row values."""
    wanted = {
        e["line"] for e in (report.get("errors") or [])[:SHOWN_ERRORS] if isinstance(e.get("line"), int)
    }
    path = Path(run.upload_path or "")
    if not wanted or not run.upload_path or not path.is_file() or path.stat().st_size > MAX_VALUES_FILE_BYTES:
        return {}
    found: dict[int, dict[str, str]] = {}
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, [])
        start = reader.line_num + 1
        for fields in reader:
            if start in wanted:
                found[start] = dict(zip(header, fields, strict=False))
                if len(found) == len(wanted):
                    break
            start = reader.line_num + 1
    return found


def _changes(
    engine: sa.Engine, run: ImportRun, entity: str | None, offset: int
) -> tuple[list[dict[str, Any]], int]:
    with engine.connect() as conn:
        return changes_mod.page(
            conn, district_id=run.district_id, import_id=run.id, entity=entity, limit=PAGE_SIZE, offset=offset
        )


@router.get("/d/{district_id}/imports/{import_id}", include_in_schema=False)
def import_page(
    request: Request,
    district: DistrictDep,
    session: SessionDep,
    engine: EngineDep,
    import_id: ImportId,
    entity: Annotated[str, Query(max_length=32)] = "",
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> Response:
    run = _run(session, district, import_id)
    report = run.report or {}
    changes, changes_total = _changes(engine, run, entity or None, offset)
    ended = run.status not in (ImportStatus.QUEUED.value, ImportStatus.RUNNING.value)
    stale = ended and request.query_params.get("notice") in UNDER_WAY_NOTICES
    return render(
        request,
        "import.html",
        {
            **({"notice": None} if stale else {}),
            "title": f"Import {run.id}",
            "district": district,
            "nav": "imports",
            "run": run,
            "report": report,
            "chart": _chart(report),
            "final": imports.is_final(run.status),
            "tone": STATUS_TONE,
            "changes": changes,
            "values": _row_values(run, report),
            "kept": bool(run.upload_path) and Path(run.upload_path or "").is_file(),
            "changes_total": changes_total,
            "entity": entity,
            "offset": offset,
            "limit": PAGE_SIZE,
            "percent": int(float((run.progress or {}).get("percent", 0))),
            "can_apply": run.dry_run
            and run.status == ImportStatus.VALIDATED.value
            and bool(run.upload_path)
            and Path(run.upload_path or "").exists(),
        },
    )


@router.get("/d/{district_id}/imports/{import_id}/status", include_in_schema=False)
def import_status(district: DistrictDep, session: SessionDep, import_id: ImportId) -> Response:
    """For the import page's polling while the import is queued or running."""
    run = _run(session, district, import_id)
    final = imports.is_final(run.status) or run.status == ImportStatus.HELD.value
    progress = run.progress or {}
    return JSONResponse(
        {"status": run.status, "final": final, "percent": int(float(progress.get("percent", 0)))}
    )


@router.get("/d/{district_id}/imports/{import_id}/errors.csv", include_in_schema=False)
def import_errors(district: DistrictDep, session: SessionDep, import_id: ImportId) -> Response:
    run = _run(session, district, import_id)
    return Response(
        content=imports.errors_csv(run),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{run.id}-errors.csv"'},
    )


def _principal(console: ConsoleSession) -> Principal:
    """The console person as the import service's caller (writes to their district only)."""
    return Principal(
        key_id=console.subject,
        name=console.actor,
        scopes=frozenset({Scope.ROSTER_WRITE.value}),
        district_id=console.district_id,
    )


async def _decide(
    engine: sa.Engine, district: District, import_id: str, console: ConsoleSession, approve: bool
) -> None:
    def run() -> None:
        with Session(engine) as session:
            _run(session, district, import_id)
        imports.decide(engine=engine, import_id=import_id, principal=_principal(console), approve_it=approve)

    await run_in_threadpool(run)


@router.get("/d/{district_id}/imports/{import_id}/changes.csv", include_in_schema=False)
def import_changes_csv(
    district: DistrictDep, session: SessionDep, engine: EngineDep, import_id: ImportId
) -> Response:
    run = _run(session, district, import_id)
    notes = changes_mod.unlisted(run.report, None, None)
    district_id, run_id = run.district_id, run.id

    def body() -> Iterator[str]:  # a connection of its own: the body streams after the route returned
        with engine.connect() as conn:
            rows = changes_mod.iter_rows(conn, district_id=district_id, import_id=run_id)
            yield from changes_mod.csv_lines(rows, notes)

    return StreamingResponse(
        body(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{run_id}-changes.csv"'},
    )


@router.get("/d/{district_id}/imports/{import_id}/file", include_in_schema=False)
def import_file(district: DistrictDep, session: SessionDep, import_id: ImportId) -> Response:
    """The file as it was received, while it is kept."""
    run = _run(session, district, import_id)
    path = Path(run.upload_path or "")
    if not run.upload_path or not path.is_file():
        raise NotFound("The file of this import is no longer kept.", code=ErrorCode.IMPORT_NOT_FOUND)
    return FileResponse(path, media_type="text/csv; charset=utf-8", filename=f"{run.id}.csv")


@router.post("/d/{district_id}/imports/{import_id}/approve", include_in_schema=False)
async def approve(
    district: DistrictDep, engine: EngineDep, console: ConsoleDep, form: FormDep, import_id: ImportId
) -> Response:
    await _decide(engine, district, import_id, console, True)
    return redirect(f"/console/d/{district.id}/imports/{import_id}", notice=APPROVED)


@router.post("/d/{district_id}/imports/{import_id}/discard", include_in_schema=False)
async def discard(
    district: DistrictDep, engine: EngineDep, console: ConsoleDep, form: FormDep, import_id: ImportId
) -> Response:
    await _decide(engine, district, import_id, console, False)
    return redirect(
        f"/console/d/{district.id}/imports/{import_id}", notice="Discarded: the roster stays as it was."
    )


@router.post("/d/{district_id}/imports/{import_id}/apply", include_in_schema=False)
async def apply(
    district: DistrictDep,
    engine: EngineDep,
    settings: SettingsDep,
    console: ConsoleDep,
    form: FormDep,
    import_id: ImportId,
) -> Response:
    """Applies the file a preview checked: a new import of the same stored bytes."""

    def requeue() -> ImportRun:
        with Session(engine) as session:
            run = _run(session, district, import_id)
        if not (run.dry_run and run.status == ImportStatus.VALIDATED.value and run.upload_path):
            raise Conflict("Only a previewed file that passed can be applied; upload it again.")
        source = Path(run.upload_path)
        if not source.exists():
            raise Conflict("The previewed file is no longer kept; upload it again.")
        return uploads.enqueue_file(
            engine=engine,
            settings=settings,
            district_id=district.id,
            source="api",
            src_path=source,
            filename=run.filename or "roster.csv",
            created_by=console.actor,
        )

    new = await run_in_threadpool(requeue)
    return redirect(f"/console/d/{district.id}/imports/{new.id}", notice=APPLYING)


# --- upload -------------------------------------------------------------------------------------


@router.get("/d/{district_id}/upload", include_in_schema=False)
def upload_form(request: Request, district: DistrictDep) -> Response:
    return render(
        request,
        "upload.html",
        {"title": "Upload a roster", "district": district, "nav": "upload"},
    )


class _ConsoleMultipart(_MultipartFile):
    """The API's streaming multipart reader, also keeping the small `csrf_token` and `mode` fields."""

    def __init__(self, boundary: bytes, sink: uploads.UploadSink) -> None:
        super().__init__(boundary, sink)
        self.fields: dict[str, bytes] = {}
        self._small: str | None = None

    def _headers_finished(self) -> None:
        super()._headers_finished()
        self._small = None
        if not self._in_file:
            _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
            name = options.get(b"name", b"").decode("latin-1")
            if name in {"csrf_token", "mode"}:
                self._small = name
                self.fields[name] = b""

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            super()._part_data(data, start, end)
        elif self._small is not None and len(self.fields[self._small]) < 200:
            self.fields[self._small] += data[start:end]


@router.post("/d/{district_id}/upload", include_in_schema=False)
async def upload(
    request: Request,
    district: DistrictDep,
    engine: EngineDep,
    settings: SettingsDep,
    console: ConsoleDep,
) -> Response:
    """Streams the file to the upload store like the API does, under the same size limit."""
    limit = settings.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + 64 * 1024:
        raise uploads.too_large(limit)
    media, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if media.decode("latin-1").lower() != "multipart/form-data" or not boundary:
        raise Invalid("Choose a CSV file to upload.")
    import_id = uploads.new_import_id()
    sink = uploads.UploadSink(settings=settings, district_id=district.id, import_id=import_id, limit=limit)
    try:
        part = _ConsoleMultipart(boundary, sink)
        async for chunk in request.stream():
            part.parser.write(chunk)
        part.parser.finalize()
        token = part.fields.get("csrf_token", b"").decode("utf-8", "replace")
        if not sessions.csrf_matches(console.csrf, token):
            raise CsrfRejected
        if not part.found or sink.size == 0:
            raise Invalid("Choose a CSV file to upload; the file sent was empty.")
        path, sha256, size = sink.finish()
    except BaseException:
        sink.abort()
        raise
    dry_run = part.fields.get("mode", b"preview") != b"apply"

    def create() -> None:
        with Session(engine, expire_on_commit=False) as session:
            uploads.create_run(
                session=session,
                import_id=import_id,
                district_id=district.id,
                source="api",
                path=path,
                sha256=sha256,
                size=size,
                filename=part.filename,
                created_by=console.actor,
                dry_run=dry_run,
            )
            session.commit()

    try:
        await run_in_threadpool(create)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    notice = CHECKING if dry_run else IMPORTING
    return redirect(f"/console/d/{district.id}/imports/{import_id}", notice=notice)
