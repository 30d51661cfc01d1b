"""HTTP for imports: upload (multipart `file` or a raw text/csv body, streamed to disk), list, read, the
error report as CSV, approve and discard a held import. Running an import is the worker's job."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from roster_api.auth import Principal
from roster_api.deps import EngineDep, ReadDep, ReadDistrictDep, SessionDep, SettingsDep, WriteDep
from roster_api.errors import Invalid, RosterError, district_not_found, responses
from roster_api.importing import changes, partials, service, uploads
from roster_api.importing.schemas import ImportPublic, ImportSummary
from roster_api.models import District
from roster_api.pagination import Page, PageDep
from roster_api.settings import Settings
from roster_api.text_input import unstorable
from roster_shared.errors import ErrorCode

router = APIRouter(tags=["imports"])
_log = logging.getLogger("roster_api.uploads")

RAW_TYPES = {"text/csv", "application/csv", "text/plain", "application/octet-stream", ""}
# a OneRoster package or Clever's files, zipped (importing.formats tells them apart by content)
RAW_TYPES |= {"application/zip", "application/x-zip-compressed"}
ImportId = Annotated[str, Path(max_length=64)]

UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
            "text/csv": {"schema": {"type": "string", "format": "binary"}},
            "application/zip": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


class UnsupportedMediaType(RosterError):
    status_code = 415
    code = ErrorCode.UNSUPPORTED_MEDIA_TYPE


class IncompleteUpload(RosterError):
    """A body that is malformed, shorter than announced or cut off: nothing of it is kept."""

    status_code = 400

    def __init__(self, message: str) -> None:
        super().__init__(message, details=[{"field": "file", "in": "body", "message": message}])


class _MultipartFile:
    """Streams the multipart part named `file` into the sink; ignores other parts. The body counts only
    when it ends with its closing boundary (a cut-off body must never be taken for a shorter roster)."""

    def __init__(self, boundary: bytes, sink: uploads.UploadSink) -> None:
        self.sink = sink
        self.found = False
        self.complete = False
        self.filename: str | None = None
        self._in_file = False
        self._field = b""
        self._value = b""
        self._headers: dict[bytes, bytes] = {}
        self.parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._part_begin,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
                "on_end": self._end,
            },
        )

    def feed(self, chunk: bytes) -> None:
        try:
            self.parser.write(chunk)
        except MultipartParseError as exc:
            raise IncompleteUpload("The multipart body is malformed; nothing was kept.") from exc

    def close(self) -> None:
        if not self.complete:
            raise IncompleteUpload(
                "The multipart body ended before its closing boundary: the upload is incomplete and "
                "nothing was kept. Send it again."
            )
        if not self.found:
            raise Invalid("Send the CSV in a multipart field named `file`.", field="file")
        if self.filename is not None and unstorable(self.filename):
            raise Invalid("The file name must not contain NUL or unpaired surrogates.", field="filename")

    def _part_begin(self) -> None:
        self._headers = {}
        self._in_file = False

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field, self._value = b"", b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if options.get(b"name") == b"file" and not self.found:
            self.found = self._in_file = True
            raw_name = options.get(b"filename")
            self.filename = raw_name.decode("utf-8", "replace") if raw_name else None

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._in_file:
            self.sink.write(data[start:end])

    def _part_end(self) -> None:
        self._in_file = False

    def _end(self) -> None:
        self.complete = True


def _check_length(declared: str | None, received: int) -> None:
    if declared is not None and declared.isdigit() and int(declared) != received:
        raise IncompleteUpload(
            f"The body has {received} bytes, not the {declared} its Content-Length announced: the upload "
            "is incomplete and nothing was kept. Send it again."
        )


def _abandoned(district_id: str, import_id: str, received: int) -> IncompleteUpload:
    # one line, no traceback: a client that goes away is not a server error
    fields = {"district_id": district_id, "import_id": import_id, "bytes": received}
    _log.info("upload abandoned: the client disconnected", extra={"fields": fields})
    return IncompleteUpload("The client disconnected before the body was complete; nothing was kept.")


def _check_district(engine: Any, principal: Principal, district_id: str) -> None:
    if not principal.sees(district_id):
        raise district_not_found(district_id)
    with Session(engine) as session:
        if session.get(District, district_id) is None:
            raise district_not_found(district_id)


def _create(
    engine: Any, settings: Settings, **fields: Any
) -> ImportPublic:  # a short transaction of its own, after the body is stored
    with Session(engine, expire_on_commit=False) as session:
        run = uploads.create_run(session=session, **fields)
        session.commit()
        return service.to_public(run)


@router.post(
    "/v1/districts/{district_id}/imports",
    status_code=status.HTTP_202_ACCEPTED,
    responses=responses(400, 404, 413, 415),
    openapi_extra=UPLOAD_BODY,
    summary="Upload a roster CSV",
)
async def upload(
    request: Request,
    response: Response,
    district_id: Annotated[str, Path(max_length=64)],
    principal: WriteDep,
    engine: EngineDep,
    settings: SettingsDep,
    dry_run: Annotated[bool, Query(description="Validate and compute the diff; change nothing")] = False,
    filename: Annotated[str | None, Query(max_length=255, description="For a raw body")] = None,
) -> ImportPublic:
    """Send the CSV as a multipart field `file`, or as the raw body with `Content-Type: text/csv`.
    Answers 202 with the queued import; poll `GET /v1/imports/{id}` for its report."""
    await run_in_threadpool(_check_district, engine, principal, district_id)
    limit = settings.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + 64 * 1024:
        raise uploads.too_large(limit)
    media, options = parse_options_header(request.headers.get("content-type", ""))
    media_type = media.decode("latin-1").lower()
    multipart = media_type == "multipart/form-data"
    if not multipart and media_type not in RAW_TYPES:
        raise UnsupportedMediaType(
            f"Content-Type {media_type!r} is not accepted: send multipart/form-data with a `file` field, "
            "or the CSV itself as text/csv."
        )
    import_id = uploads.new_import_id()
    sink = uploads.UploadSink(settings=settings, district_id=district_id, import_id=import_id, limit=limit)
    partials.hold(sink.file)
    received = 0
    try:
        if multipart:
            boundary = options.get(b"boundary")
            if not boundary:
                raise Invalid("The multipart body has no boundary.", field="file")
            part = _MultipartFile(boundary, sink)
            async for chunk in request.stream():
                received += len(chunk)
                if received > limit + 64 * 1024:
                    raise uploads.too_large(limit)
                part.feed(chunk)
            part.close()
            filename = filename or part.filename
        else:
            async for chunk in request.stream():
                received += len(chunk)
                sink.write(chunk)
        _check_length(declared, received)
        path, sha256, size = sink.finish()
    except ClientDisconnect:
        sink.abort()
        raise _abandoned(district_id, import_id, received) from None
    except BaseException:
        sink.abort()
        raise
    try:
        public = await run_in_threadpool(
            _create,
            engine,
            settings,
            import_id=import_id,
            district_id=district_id,
            source="api",
            path=path,
            sha256=sha256,
            size=size,
            filename=filename,
            created_by=principal.name,
            dry_run=dry_run,
        )
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    response.headers["Location"] = f"/v1/imports/{import_id}"
    return public


@router.get("/v1/districts/{district_id}/imports", responses=responses(404))
def list_imports(district: ReadDistrictDep, session: SessionDep, page: PageDep) -> Page[ImportSummary]:
    """The district's imports, newest first."""
    rows, total = service.list_imports(
        session=session, district_id=district.id, limit=page.limit, offset=page.offset
    )
    return Page(
        items=[service.to_summary(r) for r in rows], total=total, limit=page.limit, offset=page.offset
    )


@router.get("/v1/imports/{import_id}", responses=responses(404))
def get_import(import_id: ImportId, session: SessionDep, principal: ReadDep) -> ImportPublic:
    """The import with its report (summary, changes, seats, hold, errors, warnings)."""
    return service.to_public(service.get_import(session=session, import_id=import_id, principal=principal))


@router.get(
    "/v1/imports/{import_id}/errors.csv",
    responses={**responses(404), 200: {"content": {"text/csv": {}}}},
    response_class=Response,
)
def get_errors_csv(import_id: ImportId, session: SessionDep, principal: ReadDep) -> Response:
    """Errors and warnings as CSV (severity, line, column, code, message, hint), safe to open in a
    spreadsheet: cells that could start a formula are prefixed with `'`."""
    run = service.get_import(session=session, import_id=import_id, principal=principal)
    return Response(
        content=service.errors_csv(run),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{run.id}-errors.csv"'},
    )


@router.post(
    "/v1/imports/{import_id}/approve",
    status_code=status.HTTP_202_ACCEPTED,
    responses=responses(404, 409),
)
def approve(import_id: ImportId, engine: EngineDep, principal: WriteDep) -> ImportPublic:
    """Apply a held import despite the safety hold: it is queued again and applied by the worker,
    against the roster as it is then. 409 IMPORT_SUPERSEDED when a newer import of the district was
    applied or held since (the answer names it), IMPORT_EXPIRED when the hold waited too long."""
    run = service.decide(engine=engine, import_id=import_id, principal=principal, approve_it=True)
    return service.to_public(run)


@router.post("/v1/imports/{import_id}/discard", responses=responses(404, 409))
def discard(import_id: ImportId, engine: EngineDep, principal: WriteDep) -> ImportPublic:
    """Drop a held import; the roster stays as it is."""
    run = service.decide(engine=engine, import_id=import_id, principal=principal, approve_it=False)
    return service.to_public(run)


# --- the changes of an import -------------------------------------------------------------------

ChangeEntityQuery = Annotated[changes.Entity | None, Query(description="Only this entity")]
ChangeKindQuery = Annotated[changes.Kind | None, Query(description="Only this kind of change")]


@router.get("/v1/imports/{import_id}/changes", responses=responses(404))
def list_changes(
    import_id: ImportId,
    session: SessionDep,
    principal: ReadDep,
    page: PageDep,
    entity: ChangeEntityQuery = None,
    kind: ChangeKindQuery = None,
) -> changes.ChangesPage:
    """What a dry run, hold or applied import creates, updates (field: old -> new), deactivates or
    reactivates: one item per school, class, teacher, student, class teacher, enrollment and account,
    in file order per entity. Every update is listed, and every school, class or person deactivated or
    reactivated; created rows are listed up to the first 1,000 per entity, deactivated or reactivated
    class teachers, enrollments and accounts up to 50,000, and all are counted (`counts`,
    `not_listed`). Other imports (queued, running, rejected, skipped, failed) list nothing."""
    run = service.get_import(session=session, import_id=import_id, principal=principal)
    items, total = changes.page(
        session.connection(),
        district_id=run.district_id,
        import_id=run.id,
        entity=entity,
        kind=kind,
        limit=page.limit,
        offset=page.offset,
    )
    return changes.ChangesPage.model_validate(
        {
            "items": items,
            "total": total,
            "limit": page.limit,
            "offset": page.offset,
            "counts": changes.counts(run.report, entity, kind),
            "not_listed": changes.unlisted(run.report, entity, kind),
        }
    )


@router.get(
    "/v1/imports/{import_id}/changes.csv",
    responses={**responses(404), 200: {"content": {"text/csv": {}}}},
    response_class=StreamingResponse,
)
def get_changes_csv(
    import_id: ImportId,
    session: SessionDep,
    principal: ReadDep,
    engine: EngineDep,
    entity: ChangeEntityQuery = None,
    kind: ChangeKindQuery = None,
) -> StreamingResponse:
    """The listed changes as CSV (entity, change, id, name, line, changes), `changes` as `field: old ->
    new; ...`. An entity with more created rows than listed ends with a line saying so. Safe to open in
    a spreadsheet: cells that could start a formula are prefixed with `'`."""
    run = service.get_import(session=session, import_id=import_id, principal=principal)
    notes = changes.unlisted(run.report, entity, kind)
    district_id, run_id = run.district_id, run.id

    def body() -> Iterator[str]:  # a connection of its own: the body streams after the route returned
        with engine.connect() as conn:
            rows = changes.iter_rows(
                conn, district_id=district_id, import_id=run_id, entity=entity, kind=kind
            )
            yield from changes.csv_lines(rows, notes)

    return StreamingResponse(
        body(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{run_id}-changes.csv"'},
    )
