"""Result notices: an email to the district's contacts and a signed webhook POST when an import ends in
a way a person should hear of (rejected, held, superseded, expired, failed, applied with warnings) and
when a nightly sync finds no file or fails.

`register(settings, engine)` at start-up subscribes to import outcomes and starts the sender threads;
`close()` of what it returns stops them. `nightly_notice(...)` is the nightly job's one call."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from roster_api.importing import outcomes
from roster_api.notices.compose import nightly_event
from roster_api.notices.delivery import NoticeDispatcher
from roster_api.settings import Settings

__all__ = ["NoticeDispatcher", "active", "nightly_notice", "register", "running", "unregister"]

log = logging.getLogger("roster_api.notices")
_active: NoticeDispatcher | None = None
_lock = threading.Lock()


def register(settings: Settings, engine: sa.Engine, *, threads: int = 2) -> NoticeDispatcher:
    """Starts delivering notices in this process. Raises ValueError when ROSTER_SMTP_URL is malformed."""
    global _active
    dispatcher = NoticeDispatcher(settings=settings, engine=engine, threads=threads)
    dispatcher.start()
    outcomes.subscribe(dispatcher.on_outcome)
    with _lock:
        _active = dispatcher
    return dispatcher


def unregister(dispatcher: NoticeDispatcher, *, timeout: float = 10.0) -> None:
    """Stops listening, sends what is due within `timeout`, and stops the sender threads."""
    global _active
    outcomes.unsubscribe(dispatcher.on_outcome)
    with _lock:
        if _active is dispatcher:
            _active = None
    dispatcher.close(timeout)


@contextmanager
def running(settings: Settings, engine: sa.Engine, *, timeout: float = 30.0) -> Iterator[NoticeDispatcher]:
    """For a command that imports and then exits (`roster-api worker`, `nightly`, `import`): notices are
    delivered while it runs, and those due when it ends get up to `timeout` seconds to go out."""
    dispatcher = register(settings, engine)
    try:
        yield dispatcher
    finally:
        unregister(dispatcher, timeout=timeout)


def active() -> NoticeDispatcher | None:
    return _active


def nightly_notice(
    *, district_id: str, run_date: str, outcome: str, file_name: str | None, import_id: str | None = None
) -> None:
    """Tells the district's contacts that its nightly sync found no file (`no_file`) or `failed`; other
    outcomes are ignored, and so is a process where notices are not registered. Returns at once."""
    event = nightly_event(
        district_id=district_id, run_date=run_date, outcome=outcome, file_name=file_name, import_id=import_id
    )
    dispatcher = _active
    if event is not None and dispatcher is not None:
        dispatcher.submit(event)
