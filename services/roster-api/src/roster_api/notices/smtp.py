"""Sending one notice email over SMTP (`ROSTER_SMTP_URL`).

smtp://host[:port] upgrades with STARTTLS whenever the server offers it, and `?starttls=1` refuses a
server that does not; smtps://host[:port] speaks TLS from the first byte. `user:password@` logs in.
Certificates are verified (system CAs, or `ROSTER_SMTP_CA_FILE`)."""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from roster_api.notices.compose import Notice


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    implicit_tls: bool
    require_starttls: bool
    username: str | None
    password: str | None


class SendFailed(Exception):
    """`code` is the server's reply code when it answered; `permanent` when trying again cannot help."""

    def __init__(self, detail: str, *, code: int | None = None, permanent: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code
        self.permanent = permanent


def parse_url(url: str) -> SmtpServer:
    """Raises ValueError naming what is wrong (never echoing the URL, which may hold a password)."""
    parts = urlsplit(url)
    if parts.scheme not in {"smtp", "smtps"}:
        raise ValueError("ROSTER_SMTP_URL must start with smtp:// or smtps://")
    if not parts.hostname:
        raise ValueError("ROSTER_SMTP_URL has no host")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError("ROSTER_SMTP_URL has an invalid port") from exc
    implicit = parts.scheme == "smtps"
    flag = parse_qs(parts.query).get("starttls", ["0"])[-1].lower()
    return SmtpServer(
        host=parts.hostname,
        port=port or (465 if implicit else 25),
        implicit_tls=implicit,
        require_starttls=flag in {"1", "true", "yes"},
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def message(notice: Notice, *, sender: str, recipient: str) -> EmailMessage:
    mail = EmailMessage()
    mail["Subject"] = notice.subject
    mail["From"] = sender
    mail["To"] = recipient
    mail["Date"] = formatdate(localtime=False)
    mail["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    mail["X-Roster-Reference"] = notice.event.reference
    mail.set_content(notice.text)
    mail.add_alternative(notice.html, subtype="html")
    return mail


def _tls_context(ca_file: Path | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)


def _connect(server: SmtpServer, *, timeout: float, ca_file: Path | None) -> smtplib.SMTP:
    if server.implicit_tls:
        return smtplib.SMTP_SSL(server.host, server.port, timeout=timeout, context=_tls_context(ca_file))
    client = smtplib.SMTP(server.host, server.port, timeout=timeout)
    try:
        client.ehlo()
        if client.has_extn("starttls"):
            client.starttls(context=_tls_context(ca_file))
            client.ehlo()
        elif server.require_starttls:
            raise SendFailed("the server does not offer STARTTLS", permanent=True)
    except BaseException:
        client.close()
        raise
    return client


def _deliver(client: smtplib.SMTP, server: SmtpServer, mail: EmailMessage, sender: str, to: str) -> int:
    client.ehlo_or_helo_if_needed()
    if server.username:
        client.login(server.username, server.password or "")
    code, _ = client.mail(sender)
    if code != 250:
        raise SendFailed("the sender was refused", code=code, permanent=code >= 500)
    code, _ = client.rcpt(to)
    if code not in {250, 251}:
        raise SendFailed("the recipient was refused", code=code, permanent=code >= 500)
    # SMTP lines end in CRLF; smtplib sends bytes as they are
    code, _ = client.data(mail.as_bytes(policy=mail.policy.clone(linesep="\r\n")))
    if code != 250:
        raise SendFailed("the message was refused", code=code, permanent=code >= 500)
    return code


def send(
    notice: Notice, *, server: SmtpServer, sender: str, recipient: str, timeout: float, ca_file: Path | None
) -> int:
    """Sends the notice to one recipient; returns the server's reply code to the message (250)."""
    mail = message(notice, sender=sender, recipient=recipient)
    try:
        client = _connect(server, timeout=timeout, ca_file=ca_file)
        try:
            return _deliver(client, server, mail, sender, recipient)
        finally:
            try:
                client.quit()
            except (smtplib.SMTPException, OSError):
                client.close()
    except SendFailed:
        raise
    except smtplib.SMTPAuthenticationError as exc:
        raise SendFailed("the SMTP login was refused", code=exc.smtp_code, permanent=True) from exc
    except smtplib.SMTPResponseException as exc:
        raise SendFailed("the server refused", code=exc.smtp_code, permanent=exc.smtp_code >= 500) from exc
    except TimeoutError as exc:
        raise SendFailed("timed out") from exc
    except ssl.SSLError as exc:
        raise SendFailed(f"TLS failed ({type(exc).__name__})") from exc
    except (smtplib.SMTPException, OSError) as exc:
        # smtplib reports a read that timed out as a disconnection
        if isinstance(exc.__context__, TimeoutError):
            raise SendFailed("timed out") from exc
        raise SendFailed(f"SMTP failed ({type(exc).__name__})") from exc
