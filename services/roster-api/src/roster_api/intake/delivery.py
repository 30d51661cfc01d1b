"""Result delivery by SFTP: the results file of each outcome of an SFTP or nightly import, written into
the district's `results/` folder. Registered at start-up by the processes that run imports or decide
them (the app, the worker, the CLI) as a subscriber to import outcomes."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from sqlmodel import Session

from roster_api.importing import outcomes
from roster_api.intake.results import write_result
from roster_api.models import ImportRun
from roster_api.settings import Settings

log = logging.getLogger("roster_api.sftp.results")
SOURCES = {"sftp", "nightly"}
# The process's one target (the latest registration wins: one data folder and database per process).
_target: list[tuple[Settings, sa.Engine]] = []


def deliver_results_files(*, settings: Settings, engine: sa.Engine) -> None:
    """Writes a results file for every outcome of an SFTP or nightly import from now on."""
    _target[:] = [(settings, engine)]
    outcomes.subscribe(write_results_file)


def stop_results_files() -> None:
    _target.clear()
    outcomes.unsubscribe(write_results_file)


def write_results_file(outcome: outcomes.ImportOutcome) -> None:
    if outcome.source not in SOURCES or not _target:
        return
    settings, engine = _target[0]
    with Session(engine) as session:
        run = session.get(ImportRun, outcome.import_id)
    if run is not None:
        write_result(settings=settings, run=run, engine=engine)
