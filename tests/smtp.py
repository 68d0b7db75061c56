"""A real SMTP server (aiosmtpd) in the test process, recording what it receives."""
import email
import email.policy
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from .support import free_port


@dataclass
class Received:
    mails: list = field(default_factory=list)  # (envelope recipients, parsed message)
    logins: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def to(self, address: str) -> list:
        with self.lock:
            return [m for rcpts, m in self.mails if address in rcpts]


class _Handler:
    def __init__(self, received: Received):
        self.received = received

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.original_content,
                                             policy=email.policy.default)
        with self.received.lock:
            self.received.mails.append((list(envelope.rcpt_tos), message))
        return "250 OK"


@contextmanager
def smtp_server(*, login: tuple[str, str] | None = None):
    """Yield (url, Received); with `login`, the server asks for exactly that user/password."""
    received = Received()

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword) and login is not None
              and (auth_data.login.decode(), auth_data.password.decode()) == login)
        if ok:
            received.logins.append(login[0])
        return AuthResult(success=ok)

    port = free_port()
    options = {}
    if login:
        options = dict(authenticator=authenticator, auth_require_tls=False, auth_required=True)
    with warnings.catch_warnings():
        # Login over plain SMTP is what the test wants to see; aiosmtpd warns about it.
        warnings.simplefilter("ignore", UserWarning)
        controller = Controller(_Handler(received), hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        credentials = f"{login[0]}:{login[1]}@" if login else ""
        yield f"smtp://{credentials}127.0.0.1:{port}", received
    finally:
        controller.stop()
