"""The operator's import commands: `roster-api import FILE`, `roster-api imports list|show|approve|
discard`, `roster-api why REFERENCE`. Local: they use the database (ROSTER_DATABASE_URL) directly, as
the support role, with no API key.

`import --wait` runs the import in this process (unless a worker claims it first, then it follows the
worker), draws a progress bar while it runs, and prints the report as tables. Its exit code says the
outcome: 0 applied, validated or skipped; 3 held; 4 rejected; 1 failed (or anything else)."""

from __future__ import annotations

import getpass
import json
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import sqlalchemy as sa
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from roster_api.auth import Principal, Scope
from roster_api.settings import Settings

EXIT_CODES = {"applied": 0, "validated": 0, "skipped": 0, "held": 3, "rejected": 4}
RESTING = {"applied", "validated", "skipped", "held", "rejected", "failed", "superseded", "expired"}
FIRST_PROBLEMS = 20

imports_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode=None, help="List, show, approve and discard imports"
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)


@contextmanager
def _engine() -> Iterator[tuple[Settings, sa.Engine]]:
    from roster_api import notices
    from roster_api.db import make_engine
    from roster_api.intake.delivery import deliver_results_files, stop_results_files

    settings = Settings()
    engine = make_engine(settings.database_url, pool_size=2)
    deliver_results_files(settings=settings, engine=engine)
    dispatcher = notices.register(settings, engine)  # an import run here sends its notices
    try:
        yield settings, engine
    finally:
        notices.unregister(dispatcher, timeout=30)
        stop_results_files()
        engine.dispose()


def _operator() -> Principal:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "operator"
    return Principal(
        key_id="cli", name=f"cli:{user}"[:100], scopes=frozenset({Scope.ADMIN.value}), district_id=None
    )


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"error: {message}", markup=False)
    return typer.Exit(code)


# --- roster-api import FILE ----------------------------------------------------------------------


def import_file(
    file: Annotated[
        Path,
        typer.Argument(metavar="FILE", help="The roster CSV", exists=True, dir_okay=False, readable=True),
    ],
    district: Annotated[str, typer.Option("--district", "-d", metavar="DISTRICT", help="The district's id")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check and compare only; change nothing")
    ] = False,
    wait: Annotated[
        bool, typer.Option("--wait", help="Run it now and show the report (else the worker runs it)")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the import as JSON, not tables")] = False,
) -> None:
    """Import a roster file for a district. Exit code with --wait: 0 applied, validated or skipped;
    3 held; 4 rejected; 1 failed."""
    from roster_api.errors import RosterError
    from roster_api.importing import uploads

    with _engine() as (settings, engine):
        try:
            run = uploads.enqueue_file(
                engine=engine,
                settings=settings,
                district_id=district,
                source="cli",
                src_path=file,
                filename=file.name,
                created_by=_operator().name,
                dry_run=dry_run,
            )
        except RosterError as exc:
            raise _fail(exc.message) from exc
        if not wait:
            _show(run.id, engine, as_json)
            return
        status = _run_with_progress(engine, settings, run.id, quiet=as_json)
        _show(run.id, engine, as_json)
    raise typer.Exit(EXIT_CODES.get(status, 1))


def _run_with_progress(engine: sa.Engine, settings: Settings, import_id: str, *, quiet: bool) -> str:
    """Runs the import in a thread of this process while the bar follows its counters. If a worker
    claimed it first, follows the progress the worker writes; if another import of the district was
    applying (it went back to the queue), tries again."""
    bar = Progress(
        TextColumn("{task.description:<10}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rows]:>12,} rows"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=quiet or not err.is_terminal,
    )
    with bar:
        task = bar.add_task("reading", total=100, rows=0)
        status = _run_here(engine, settings, import_id, bar, task)
        while status not in RESTING:
            time.sleep(0.5)
            if status == "queued":
                status = _run_here(engine, settings, import_id, bar, task)
                continue
            snap = _stored_progress(engine, import_id) or {}  # a worker runs it
            bar.update(task, completed=snap.get("percent", 0), description=snap.get("phase", status))
            status = _status(engine, import_id)
    return status


def _run_here(engine: sa.Engine, settings: Settings, import_id: str, bar: Progress, task: Any) -> str:
    from roster_api.importing.progress import Progress as Counters
    from roster_api.importing.run import run_import

    counters = Counters()
    failed: list[BaseException] = []

    def run() -> None:
        try:
            run_import(engine=engine, settings=settings, import_id=import_id, progress=counters)
        except BaseException as exc:  # shown by the main thread
            failed.append(exc)

    thread = threading.Thread(target=run, name="cli-import", daemon=True)
    thread.start()
    while thread.is_alive():
        snap = counters.snapshot()
        bar.update(task, completed=snap["percent"], description=snap["phase"], rows=snap["rows_read"])
        thread.join(0.2)
    if failed:
        raise failed[0]
    return _status(engine, import_id)


def _status(engine: sa.Engine, import_id: str) -> str:
    from roster_api.importing.service import load_import

    return load_import(engine, import_id).status


def _stored_progress(engine: sa.Engine, import_id: str) -> dict[str, Any] | None:
    from roster_api.importing.service import load_import

    return load_import(engine, import_id).progress


# --- showing an import --------------------------------------------------------------------------


def _show(import_id: str, engine: sa.Engine, as_json: bool) -> None:
    from roster_api.importing import service

    public = service.to_public(service.load_import(engine, import_id))
    if as_json:
        out.print_json(public.model_dump_json())
        return
    report: Mapping[str, Any] = public.report
    facts = Table(show_header=False, box=None)
    facts.add_row("Reference", public.id)
    facts.add_row("District", public.district_id)
    facts.add_row("Status", public.status.value + (" (dry run)" if public.dry_run else ""))
    if public.superseded_by:
        facts.add_row("Superseded by", public.superseded_by)
    facts.add_row("File", f"{public.filename or '-'} ({public.size_bytes:,} bytes)")
    if public.summary:
        facts.add_row("Read", ", ".join(f"{v:,} {k}" for k, v in public.summary.items()))
    if public.failure:
        facts.add_row("Failure", public.failure)
    if report.get("skipped_because"):
        facts.add_row("Skipped", str(report["skipped_because"]))
    out.print(facts)
    _changes_table(report.get("changes") or {})
    _hold_table(report.get("hold") or {}, public.status.value)
    _problems_table("Errors", report.get("errors") or [], int(report.get("error_count") or 0))
    _problems_table("Warnings", report.get("warnings") or [], int(report.get("warning_count") or 0))


def _changes_table(changes: Mapping[str, Any]) -> None:
    kinds = ("created", "updated", "deactivated", "reactivated", "unchanged")
    rows = [(name, c) for name, c in changes.items() if isinstance(c, Mapping)]
    if not rows:
        return
    table = Table(title="Changes", title_justify="left")
    table.add_column("")
    for kind in kinds:
        table.add_column(kind, justify="right")
    for name, change in rows:
        table.add_row(name.replace("_", " "), *(f"{int(change.get(k) or 0):,}" for k in kinds))
    out.print(table)


def _hold_table(hold: Mapping[str, Any], status: str) -> None:
    reasons = [r for r in hold.get("reasons") or [] if isinstance(r, Mapping)]
    if status != "held" or not reasons:
        return
    table = Table(title="Why it is held", title_justify="left", show_header=False)
    table.add_column("reason")
    for reason in reasons:
        table.add_row(str(reason.get("message") or ", ".join(f"{k} {v}" for k, v in reason.items())))
    out.print(table)
    out.print("Approve with `roster-api imports approve <reference>`, or discard it.")


def _problems_table(title: str, items: list[Mapping[str, Any]], total: int) -> None:
    if not items:
        return
    shown = items[:FIRST_PROBLEMS]
    more = f" (the first {len(shown)} of {total:,})" if total > len(shown) else ""
    table = Table(title=f"{title}{more}", title_justify="left")
    for column in ("line", "column", "code", "message"):
        table.add_column(column)
    for item in shown:
        line = "" if item.get("line") is None else f"{item['line']:,}"
        table.add_row(
            line, str(item.get("column") or ""), str(item.get("code") or ""), str(item.get("message"))
        )
    out.print(table)


# --- roster-api imports ...----------------------------------------------------------------------


@imports_app.command("list")
def list_imports(
    district: Annotated[str, typer.Option("--district", "-d", metavar="DISTRICT", help="The district's id")],
    status: Annotated[
        str | None, typer.Option(metavar="STATUS", help="Only imports with this status, e.g. held")
    ] = None,
    limit: Annotated[
        int, typer.Option(metavar="N", help="How many, newest first (1-1000)", min=1, max=1000)
    ] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines, not a table")] = False,
) -> None:
    """A district's imports, newest first."""
    from sqlmodel import Session

    from roster_api.importing import service

    with _engine() as (_, engine), Session(engine) as session:
        rows, total = service.list_imports(
            session=session, district_id=district, limit=limit, offset=0, status=status
        )
        summaries = [service.to_summary(r) for r in rows]
    if as_json:
        for summary in summaries:
            out.print(summary.model_dump_json(), markup=False)
        return
    table = Table(title=f"{district}: {len(summaries)} of {total:,} imports", title_justify="left")
    table.add_column("reference", no_wrap=True)
    for column in ("created (UTC)", "source", "status", "file", "errors"):
        table.add_column(column)
    for s in summaries:
        shown = s.status.value + (" (dry run)" if s.dry_run else "")
        created = f"{s.created_at:%Y-%m-%d %H:%M}"
        table.add_row(s.id, created, s.source, shown, s.filename or "-", f"{s.error_count:,}")
    out.print(table)


@imports_app.command("show")
def show_import(
    reference: Annotated[str, typer.Argument(metavar="REFERENCE", help="The import's id (its reference)")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the import as JSON, not tables")] = False,
) -> None:
    """One import with its report: counts, changes, why it is held, errors and warnings."""
    from roster_api.errors import RosterError

    with _engine() as (_, engine):
        try:
            _show(reference, engine, as_json)
        except RosterError as exc:
            raise _fail(exc.message) from exc


def _decide(reference: str, approve: bool) -> None:
    from roster_api.errors import RosterError
    from roster_api.importing import service

    with _engine() as (_, engine):
        try:
            run = service.decide(
                engine=engine, import_id=reference, principal=_operator(), approve_it=approve
            )
        except RosterError as exc:
            raise _fail(f"{exc.message} ({exc.code.value})") from exc
    if approve:
        err.print(f"{run.id} approved: queued again; the worker applies it against the roster as it is then.")
    else:
        err.print(f"{run.id} discarded: the roster stays as it is.")


@imports_app.command("approve")
def approve_import(
    reference: Annotated[str, typer.Argument(metavar="REFERENCE", help="The held import's id")],
) -> None:
    """Apply a held import despite the safety hold (the worker runs it again)."""
    _decide(reference, approve=True)


@imports_app.command("discard")
def discard_import(
    reference: Annotated[str, typer.Argument(metavar="REFERENCE", help="The held import's id")],
) -> None:
    """Drop a held import; the roster stays as it is."""
    _decide(reference, approve=False)


# --- roster-api why REFERENCE ------------------------------------------------------------------


def why(
    reference: Annotated[
        str, typer.Argument(metavar="REFERENCE", help="The reference the user saw, e.g. LA-7KQ2M-9XPDH")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the attempt as JSON")] = False,
) -> None:
    """Explain a login attempt: what was decided, why, and what the roster holds for it today."""
    from sqlmodel import Session

    from roster_api.accounts import service as accounts
    from roster_api.accounts.rules import normalize_reference
    from roster_api.accounts.schemas import LoginAttemptPublic

    with _engine() as (_, engine), Session(engine) as session:
        attempt = accounts.get_attempt(session=session, reference=normalize_reference(reference))
        if attempt is None:
            raise _fail(f"no login attempt has the reference {reference.strip()[:32]!r}")
        public = LoginAttemptPublic.of(attempt).model_dump(mode="json")
        public["roster_now"] = accounts.roster_now(session=session, attempt=attempt)
    if as_json:
        out.print_json(json.dumps(public))
        return
    facts = Table(show_header=False, box=None)
    for label, key in (
        ("Reference", "reference"),
        ("When (UTC)", "created_at"),
        ("Outcome", "outcome"),
        ("Reason", "reason"),
        ("Decided by", "rule"),
        ("Why", "diagnosis"),
        ("Product", "product"),
        ("District", "district_id"),
        ("Clever district", "clever_district_id"),
        ("Clever user", "clever_user_id"),
        ("Clever role", "clever_role"),
        ("Matched by", "matched_by"),
        ("Person", "person_id"),
        ("Account", "account_id"),
    ):
        if public.get(key) is not None:
            facts.add_row(label, str(public[key]))
    out.print(facts)
    for title, key in (("Roster then", "roster"), ("Roster now", "roster_now")):
        if public.get(key):
            out.print(f"{title}: {json.dumps(public[key], sort_keys=True)}", markup=False)
