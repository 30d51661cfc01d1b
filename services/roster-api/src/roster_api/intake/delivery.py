"""Result delivery by SFTP: the results file of each outcome of an SFTP or nightly import, written into
the district's `results/` folder. A subscriber to import outcomes, registered by the processes that run
imports or decide them: the app for its lifetime, the worker around each import, the CLI per command."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlmodel import Session

from roster_api.importing import outcomes
from roster_api.intake.results import write_result
from roster_api.models import ImportRun
from roster_api.settings import Settings

log = logging.getLogger("roster_api.sftp.results")
SOURCES = {"sftp", "nightly"}
# Who writes, innermost registration last: the app for its lifetime, the worker around each import it
# runs, the CLI for a command. Nothing is held past its registration (an import run with none, as in a
# benchmark, writes no results file).
_targets: list[tuple[Settings, sa.Engine]] = []
_lock = threading.Lock()


def deliver_results_files(*, settings: Settings, engine: sa.Engine) -> None:
    """Writes a results file for every outcome of an SFTP or nightly import until `stop_results_files`."""
    with _lock:
        _targets.append((settings, engine))
    outcomes.subscribe(write_results_file)


def stop_results_files(engine: sa.Engine | None = None) -> None:
    """Ends the latest registration (of `engine`, when given)."""
    with _lock:
        for i in range(len(_targets) - 1, -1, -1):
            if engine is None or _targets[i][1] is engine:
                del _targets[i]
                break
        done = not _targets
    if done:
        outcomes.unsubscribe(write_results_file)


@contextmanager
def delivering(*, settings: Settings, engine: sa.Engine) -> Iterator[None]:
    deliver_results_files(settings=settings, engine=engine)
    try:
        yield
    finally:
        stop_results_files(engine)


def write_results_file(outcome: outcomes.ImportOutcome) -> None:
    if outcome.source not in SOURCES:
        return
    with _lock:
        if not _targets:
            return
        settings, engine = _targets[-1]
    with Session(engine) as session:
        run = session.get(ImportRun, outcome.import_id)
    if run is not None:
        write_result(settings=settings, run=run, engine=engine)
