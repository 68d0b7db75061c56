"""Outgoing mail through SMTP (GATEHOUSE_SMTP_URL); without it, mail is logged instead.

    smtp://host:25                  plain SMTP
    smtp+starttls://user:pw@host:587  STARTTLS, then login
    smtps://user:pw@host:465        TLS from the first byte, then login

User and password are URL-encoded in the URL; login happens only when a user is given.
"""
import smtplib
import ssl
from email.message import EmailMessage
from typing import Iterable
from urllib.parse import unquote, urlsplit

from flask import current_app

PORTS = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}


class MailError(Exception):
    """The SMTP server could not be reached or refused a message."""


def configured() -> bool:
    return bool(current_app.config.get("SMTP_URL"))


def message(to: str, subject: str, body: str) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = current_app.config["MAIL_FROM"]
    mail["To"] = to
    mail["Subject"] = subject
    mail.set_content(body)
    return mail


def send(messages: Iterable[EmailMessage]) -> int:
    """Send every message over one connection; return how many went (or were logged)."""
    messages = list(messages)
    if not messages:
        return 0
    url = current_app.config.get("SMTP_URL")
    if not url:
        for mail in messages:
            current_app.logger.info("SMTP is not configured (GATEHOUSE_SMTP_URL); would send to "
                                    "%s: %s\n%s", mail["To"], mail["Subject"], mail.get_content())
        return len(messages)
    parts = urlsplit(url)
    if parts.scheme not in PORTS or not parts.hostname:
        raise MailError(f"GATEHOUSE_SMTP_URL must be smtp://, smtp+starttls:// or smtps:// "
                        f"with a host, not {parts.scheme or 'no scheme'}://")
    port = parts.port or PORTS[parts.scheme]
    timeout = float(current_app.config.get("SMTP_TIMEOUT", 30))
    try:
        if parts.scheme == "smtps":
            server = smtplib.SMTP_SSL(parts.hostname, port, timeout=timeout,
                                      context=ssl.create_default_context())
        else:
            server = smtplib.SMTP(parts.hostname, port, timeout=timeout)
        with server:
            if parts.scheme == "smtp+starttls":
                server.starttls(context=ssl.create_default_context())
            if parts.username:
                server.login(unquote(parts.username), unquote(parts.password or ""))
            for mail in messages:
                server.send_message(mail)
    except (OSError, smtplib.SMTPException) as error:
        raise MailError(f"could not send mail through {parts.hostname}:{port}: {error}") from error
    return len(messages)
