"""An SMTP catcher (aiosmtpd, a development dependency): keeps every message it receives.

`make dev` runs one when SMTP_HOST is unset (messages saved under DATA_DIR/mail and logged with
their links); the tests read theirs from memory.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import threading
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger("app.mail.catcher")

_LINK = re.compile(r"https?://[^\s\"'<>]+")


def message_text(message: EmailMessage) -> str:
    """The plain-text body (or the HTML one when there is no text part)."""
    part = message.get_body(preferencelist=("plain", "html"))
    return str(part.get_content()) if part is not None else ""


def message_links(message: EmailMessage) -> list[str]:
    """Every http(s) link in the message body, in order, without duplicates."""
    return list(dict.fromkeys(_LINK.findall(message_text(message))))


class CatchingHandler:
    """aiosmtpd handler: parses, stores (and optionally saves) each message.

    To test failures: `fail_next = n` answers the next n messages with a temporary failure
    (451); `refuse` holds addresses refused for good (550); `delay` holds each message that
    many seconds before answering (a slow server).
    """

    def __init__(self, save_dir: Path | None = None) -> None:
        self.messages: list[EmailMessage] = []
        self.save_dir = save_dir
        self.fail_next = 0
        self.refuse: set[str] = set()
        self.delay = 0.0
        self.lock = threading.Lock()
        self.received = threading.Condition(self.lock)

    async def handle_RCPT(  # noqa: N802
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address.lower() in self.refuse:
            return "550 5.1.1 Mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if self.delay:
            await asyncio.sleep(self.delay)
        with self.lock:
            if self.fail_next > 0:
                self.fail_next -= 1
                return "451 Requested action aborted: try again later"
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        if self.save_dir is not None:
            self.save_dir.mkdir(parents=True, exist_ok=True)
            name = f"{time.strftime('%Y%m%d-%H%M%S')}-{time.monotonic_ns() % 1_000_000:06d}.eml"
            (self.save_dir / name).write_bytes(envelope.content)
            log.info(
                "mail_caught",
                to=message["To"],
                subject=message["Subject"],
                links=message_links(message),
                saved=str(self.save_dir / name),
            )
        with self.received:
            self.messages.append(message)
            self.received.notify_all()
        return "250 Message accepted for delivery"


class MailCatcher:
    """An aiosmtpd controller on 127.0.0.1 in a background thread."""

    def __init__(self, *, port: int = 0, save_dir: Path | None = None) -> None:
        from aiosmtpd.controller import Controller

        self.handler = CatchingHandler(save_dir)
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=port or _free_port())

    @property
    def port(self) -> int:
        port: int = self.controller.port
        return port

    def start(self) -> MailCatcher:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()


def _free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
