"""A local SMTP server for tests: STARTTLS with a test CA, AUTH with one password, every mail kept.

Why: the email receiver is only proven when a real Alertmanager has negotiated TLS, logged in with
the password it read from a file, and delivered a mail that a test can read, like a mail server
would. aiosmtpd runs in its own thread and event loop; trustme issues a certificate for 127.0.0.1.
"""

from __future__ import annotations

import email
import email.policy
import importlib
import ssl
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, Self

from tests.servers import LOCALHOST, free_port, missing, wait_until


def _require(module: str) -> ModuleType:
    """Import a test dependency; a missing one fails under CI and skips locally (like require_binary)."""
    try:
        return importlib.import_module(module)
    except ImportError:
        missing(f"{module} not installed: pip install -e '.[test]'")


@dataclass(frozen=True)
class ReceivedMail:
    """One mail as the server received it."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    tls: bool  # the session had switched to TLS
    login: str | None  # the user it authenticated as

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    def body(self, kind: str) -> str:
        """The text of the "plain" or "html" part."""
        part = self.message.get_body(preferencelist=(kind,))
        assert part is not None, f"no {kind} part in {self.message!r}"
        return str(part.get_content())


class SmtpSink:
    """An SMTP server on 127.0.0.1 requiring STARTTLS and AUTH (user `username`, `password`)."""

    def __init__(self, tmp_path: Path, username: str = "alerts", password: str = "s3cret-smtp-pass") -> None:
        controller_mod = _require("aiosmtpd.controller")
        smtp_mod = _require("aiosmtpd.smtp")
        trustme = _require("trustme")
        self.username, self.password = username, password
        ca = trustme.CA()
        cert = ca.issue_cert(LOCALHOST, "localhost")
        self.ca_file = tmp_path / "smtp-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        self._lock = threading.Lock()
        self._mails: list[ReceivedMail] = []
        self.failed_logins = 0
        sink = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd API
                message = email.message_from_bytes(envelope.content, policy=email.policy.default)
                assert isinstance(message, EmailMessage)
                login = session.auth_data if session.authenticated else None
                mail = ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), message,
                                    session.ssl is not None, login)  # fmt: skip
                with sink._lock:
                    sink._mails.append(mail)
                return "250 OK"

        def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
            ok = (
                isinstance(auth_data, smtp_mod.LoginPassword)
                and auth_data.login.decode() == sink.username
                and auth_data.password.decode() == sink.password
            )
            if not ok:
                with sink._lock:
                    sink.failed_logins += 1
            return smtp_mod.AuthResult(success=ok, handled=False, auth_data=auth_data.login.decode() if ok else None)

        self.port = free_port()
        self._controller = controller_mod.Controller(
            Handler(), hostname=LOCALHOST, port=self.port, tls_context=context, require_starttls=True,
            authenticator=authenticate, auth_required=True, auth_require_tls=True,
            server_hostname="localhost", ready_timeout=10,
            # aiosmtpd's LOGIN challenge is "User Name", which Alertmanager's LOGIN client rejects
            # ("unexpected server challenge"; real servers say "Username:"): offer PLAIN, as most do.
            auth_exclude_mechanism=["LOGIN"],
        )  # fmt: skip

    @property
    def smarthost(self) -> str:
        """host:port, as Alertmanager's `smarthost` wants it."""
        return f"{LOCALHOST}:{self.port}"

    def mails(self) -> list[ReceivedMail]:
        """A copy of the mails so far, oldest first."""
        with self._lock:
            return list(self._mails)

    def wait_for(self, predicate: Any, timeout: float = 30.0) -> list[ReceivedMail]:
        """Poll until ``predicate(mails)`` is truthy; returns the mails at that moment."""
        wait_until(lambda: predicate(self.mails()), timeout, describe=lambda: f"mails: {self.mails()!r}")
        return self.mails()

    def start(self) -> Self:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

