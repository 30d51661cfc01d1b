"""Import outcomes as events. `importing` publishes one after an import's final state is committed;
result delivery (the SFTP results file, email and webhook notices) subscribes at start-up, so `importing`
imports nothing from `intake`, `jobs` or `notices`.

A subscriber runs after commit, outside the import's transaction; its failure is logged and never
changes the import's outcome."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("roster_api.importing.outcomes")


@dataclass(frozen=True)
class ImportOutcome:
    import_id: str
    district_id: str
    # applied | validated | skipped | held | rejected | failed | superseded | expired | discarded
    status: str
    source: str  # api | sftp | nightly | cli | console
    dry_run: bool
    file_name: str | None = None
    superseded_by: str | None = None
    # the stored report (counts, errors, warnings); never names or emails of students in a notice
    report: Mapping[str, Any] = field(default_factory=dict)


Subscriber = Callable[[ImportOutcome], None]

_subscribers: list[Subscriber] = []
_lock = threading.Lock()


def subscribe(subscriber: Subscriber) -> None:
    """Registers `subscriber` once (a second registration of the same callable is ignored)."""
    with _lock:
        if subscriber not in _subscribers:
            _subscribers.append(subscriber)


def unsubscribe(subscriber: Subscriber) -> None:
    with _lock:
        if subscriber in _subscribers:
            _subscribers.remove(subscriber)


def publish(outcome: ImportOutcome) -> None:
    """Hands `outcome` to every subscriber in registration order. Never raises."""
    with _lock:
        subscribers = list(_subscribers)
    for subscriber in subscribers:
        try:
            subscriber(outcome)
        except Exception as exc:  # a courtesy after the fact: the import itself is done
            log.warning(
                "an import outcome subscriber failed",
                extra={"fields": {"import_id": outcome.import_id, "error": type(exc).__name__}},
            )
