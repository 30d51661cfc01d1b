"""Delivering notices off the import's thread: an in-process queue, a few sender threads, retries with
backoff, and one `notice_delivery` row per attempt (the delivery log).

Why in memory and not a table of pending deliveries: a notice is a courtesy after the fact, the import
and its results file are already committed, and the log shows every attempt. The price is that notices
waiting for a retry when the process stops are not sent; they are logged as undelivered then, so the
delivery log never shows a notice as pending forever.

`publish()` of an import outcome only appends to the queue; reading the district's settings, composing
and sending all happen on the sender threads, after the import's transaction has committed."""

from __future__ import annotations

import heapq
import itertools
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import httpx
import sqlalchemy as sa
from sqlmodel import Session

from roster_api.importing.outcomes import ImportOutcome
from roster_api.models import District, NoticeDelivery, NoticeSetting
from roster_api.notices import smtp, webhook
from roster_api.notices.compose import Notice, NoticeEvent, compose, event_for
from roster_api.settings import Settings

log = logging.getLogger("roster_api.notices")
MAX_BACKOFF_SECONDS = 3600.0


class _Job(Protocol):
    def run(self, dispatcher: NoticeDispatcher) -> None: ...

    def abandon(self, dispatcher: NoticeDispatcher) -> None: ...


@dataclass
class _Compose:
    event: NoticeEvent

    def run(self, dispatcher: NoticeDispatcher) -> None:
        dispatcher.fan_out(self.event)

    def abandon(self, dispatcher: NoticeDispatcher) -> None:
        log.warning(
            "notice not sent: the process stopped",
            extra={"fields": {"reference": self.event.reference, "district_id": self.event.district_id}},
        )


@dataclass
class _Attempt:
    """One notice to one recipient (an email address) or to the district's webhook."""

    notice: Notice
    channel: str  # email | webhook
    recipient: str  # the address for email; "" for the webhook (read afresh at each attempt)
    target: str  # what the log shows: an email domain or the webhook's host
    delivery_id: str
    attempt: int = 1

    def run(self, dispatcher: NoticeDispatcher) -> None:
        dispatcher.attempt(self)

    def abandon(self, dispatcher: NoticeDispatcher) -> None:
        dispatcher.record(self, "undelivered", None, "the process stopped before the next attempt")


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower()[:255]


def _host(url: str | None) -> str:
    return (urlsplit(url).hostname or "")[:255] if url else ""


class NoticeDispatcher:
    def __init__(self, *, settings: Settings, engine: sa.Engine, threads: int = 2) -> None:
        self.settings = settings
        self.engine = engine
        raw = settings.smtp_url.get_secret_value()
        self.smtp_server = smtp.parse_url(raw) if raw else None
        self._threads_wanted = threads
        self._threads: list[threading.Thread] = []
        self._cond = threading.Condition()
        self._queue: list[tuple[float, int, _Job]] = []
        self._seq = itertools.count()
        self._busy = 0
        self._closing = False
        self._stopped = False
        self._http = httpx.Client(follow_redirects=False)
        # httpx logs every request's URL at INFO, and a webhook URL may carry a token
        quiet = logging.getLogger("httpx")
        quiet.setLevel(max(quiet.level, logging.WARNING))

    # --- the queue --------------------------------------------------------------------------------

    def start(self) -> None:
        for number in range(self._threads_wanted):
            thread = threading.Thread(target=self._loop, name=f"notice-sender-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def on_outcome(self, outcome: ImportOutcome) -> None:
        """The import-outcome subscriber: returns at once."""
        event = event_for(outcome)
        if event is not None:
            self.submit(event)

    def submit(self, event: NoticeEvent) -> None:
        self._push(_Compose(event), delay=0.0)

    def _push(self, job: _Job, *, delay: float) -> bool:
        with self._cond:
            if self._stopped:
                return False
            heapq.heappush(self._queue, (time.monotonic() + delay, next(self._seq), job))
            self._cond.notify()
            return True

    def _take(self) -> _Job | None:
        with self._cond:
            while not self._stopped:
                now = time.monotonic()
                if self._queue and self._queue[0][0] <= now:
                    self._busy += 1
                    return heapq.heappop(self._queue)[2]
                self._cond.wait(self._queue[0][0] - now if self._queue else None)
            return None

    def _loop(self) -> None:
        while (job := self._take()) is not None:
            try:
                job.run(self)
            except Exception as exc:  # a notice must never take a sender thread down
                log.warning("notice job failed", extra={"fields": {"error": type(exc).__name__}})
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()

    def _idle(self, *, due_only: bool) -> bool:
        now = time.monotonic()
        waiting = [entry for entry in self._queue if not due_only or entry[0] <= now]
        return not waiting and self._busy == 0

    def drain(self, timeout: float) -> bool:
        """Waits until every notice, retries included, is delivered or given up. True when idle."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._idle(due_only=False):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
            return True

    def close(self, timeout: float = 10.0) -> None:
        """Sends what is due now (within `timeout`), then stops; retries still waiting are logged as
        undelivered."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._closing = True
            while not self._idle(due_only=True) and time.monotonic() < deadline:
                self._cond.wait(min(max(deadline - time.monotonic(), 0.0), 0.05))
            self._stopped = True
            left = [entry[2] for entry in self._queue]
            self._queue.clear()
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0.1))
        self._threads.clear()
        for job in left:
            job.abandon(self)
        self._http.close()

    # --- composing and sending --------------------------------------------------------------------

    def fan_out(self, event: NoticeEvent) -> None:
        """Reads the district's settings, composes the notice, queues one attempt per recipient."""
        with Session(self.engine) as session:
            district = session.get(District, event.district_id)
            setting = session.get(NoticeSetting, event.district_id)
            if district is None or setting is None:
                return
            contacts = list(setting.contacts)
            webhook_host = _host(setting.webhook_url) if setting.webhook_secret else ""
            notice = compose(event, district_name=district.name, timezone=district.timezone)
        delivery_id = "ntc_" + secrets.token_hex(8)
        for address in contacts:
            self._push(_Attempt(notice, "email", address, _domain(address), delivery_id), delay=0.0)
        if webhook_host:
            self._push(_Attempt(notice, "webhook", "", webhook_host, delivery_id), delay=0.0)

    def attempt(self, job: _Attempt) -> None:
        try:
            code = self._send_email(job) if job.channel == "email" else self._post_webhook(job)
        except (smtp.SendFailed, webhook.PostFailed) as exc:
            self._failed(job, exc.code, exc.detail, permanent=exc.permanent)
            return
        self.record(job, "delivered", code, None)

    def _send_email(self, job: _Attempt) -> int:
        if self.smtp_server is None:
            raise smtp.SendFailed("no SMTP server is configured (ROSTER_SMTP_URL)", permanent=True)
        return smtp.send(
            job.notice,
            server=self.smtp_server,
            sender=self.settings.smtp_from,
            recipient=job.recipient,
            timeout=self.settings.notice_timeout_seconds,
            ca_file=self.settings.smtp_ca_file,
        )

    def _post_webhook(self, job: _Attempt) -> int:
        with Session(self.engine) as session:
            setting = session.get(NoticeSetting, job.notice.event.district_id)
            url = setting.webhook_url if setting else None
            secret = setting.webhook_secret if setting else None
        if not url or not secret:
            raise webhook.PostFailed("the district removed its webhook", permanent=True)
        job.target = _host(url)
        return webhook.post(
            url=url,
            secret=secret,
            payload=job.notice.payload,
            delivery_id=job.delivery_id,
            timeout=self.settings.notice_timeout_seconds,
            client=self._http,
        )

    def _failed(self, job: _Attempt, code: int | None, detail: str, *, permanent: bool) -> None:
        if permanent or job.attempt >= self.settings.notice_max_attempts or self._closing:
            self.record(job, "undelivered", code, detail)
            return
        self.record(job, "retrying", code, detail)
        delay = min(self.settings.notice_backoff_seconds * 2 ** (job.attempt - 1), MAX_BACKOFF_SECONDS)
        job.attempt += 1
        if not self._push(job, delay=delay):
            self.record(job, "undelivered", None, "the process stopped before the next attempt")

    def record(self, job: _Attempt, outcome: str, code: int | None, detail: str | None) -> None:
        event = job.notice.event
        fields = {
            "reference": event.reference,
            "district_id": event.district_id,
            "event": event.kind,
            "channel": job.channel,
            "target": job.target,
            "attempt": job.attempt,
            "outcome": outcome,
            "code": code,
            "detail": detail,
        }
        level = logging.INFO if outcome == "delivered" else logging.WARNING
        log.log(level, "notice " + outcome, extra={"fields": fields})
        row = NoticeDelivery(
            district_id=event.district_id,
            import_id=event.import_id,
            reference=event.reference,
            event=event.kind,
            channel=job.channel,
            target=job.target,
            attempt=job.attempt,
            outcome=outcome,
            code=code,
            detail=detail[:200] if detail else None,
        )
        try:
            with Session(self.engine) as session:
                session.add(row)
                session.commit()
        except sa.exc.SQLAlchemyError as exc:  # the log is best effort, like the notice itself
            log.warning("could not record a notice attempt", extra={"fields": {"error": type(exc).__name__}})
