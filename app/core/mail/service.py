"""`MailService` on aiosmtplib, with Jinja2 templates that live in each feature module.

Template "auth/verify_email" is the module `auth`'s folder `emails/` (or its spec's
`templates_dir`): `verify_email.subject.txt`, `verify_email.txt` and, optionally,
`verify_email.html`. Sent mail has a plain-text part and, when there is HTML, an alternative.
"""

from __future__ import annotations

import email
import email.policy
import mimetypes
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid, parseaddr
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import aiosmtplib
import structlog
from fastapi import Depends, Request
from opentelemetry import trace
from sqlalchemy.ext.asyncio import AsyncSession
from taskiq import TaskiqDepends

from app.core import metrics
from app.core.config import Settings
from app.core.modules import DEFAULT_PACKAGES, discover_modules
from app.core.outbox import RunOnce, enqueue
from app.core.queue import broker

if TYPE_CHECKING:
    from jinja2 import Environment

log = structlog.get_logger("app.mail")


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    content_type: str | None = None  # guessed from the filename when not given


@dataclass(frozen=True)
class RenderedMail:
    subject: str
    text: str
    html: str | None


def module_template_dirs(packages: Iterable[str] = DEFAULT_PACKAGES) -> dict[str, Path]:
    """`{module name: its emails folder}` for every feature module that has one."""
    return {
        spec.name: spec.templates_dir
        for spec in discover_modules(packages)
        if spec.templates_dir is not None and spec.templates_dir.is_dir()
    }


class MailTemplates:
    """The modules' mail templates (Jinja2), loaded when the first mail is rendered: a web
    process that renders none (most requests queue nothing) never imports Jinja2."""

    def __init__(self, folders: dict[str, Path]) -> None:
        self.folders = folders
        self._env: Environment | None = None

    @property
    def env(self) -> Environment:
        if self._env is None:
            from jinja2 import (
                Environment,
                FileSystemLoader,
                PrefixLoader,
                StrictUndefined,
                select_autoescape,
            )

            loader = PrefixLoader(
                {name: FileSystemLoader(str(path)) for name, path in self.folders.items()},
                delimiter="/",
            )
            self._env = Environment(
                loader=loader,
                autoescape=select_autoescape(enabled_extensions=("html",), default=False),
                undefined=StrictUndefined,
                keep_trailing_newline=True,
            )
        return self._env

    @classmethod
    def discover(cls, packages: Iterable[str] = DEFAULT_PACKAGES) -> MailTemplates:
        return cls(module_template_dirs(packages))

    def render(self, template: str, context: dict[str, Any]) -> RenderedMail:
        subject = self.env.get_template(f"{template}.subject.txt").render(context)
        text = self.env.get_template(f"{template}.txt").render(context)
        from jinja2 import TemplateNotFound

        try:
            html: str | None = self.env.get_template(f"{template}.html").render(context)
        except TemplateNotFound:
            html = None
        return RenderedMail(subject=" ".join(subject.split()), text=text, html=html)


class MailService:
    def __init__(self, settings: Settings, templates: MailTemplates) -> None:
        self.settings = settings
        self.templates = templates

    def build(
        self,
        *,
        to: str | Sequence[str],
        subject: str,
        text: str,
        html: str | None = None,
        attachments: Sequence[Attachment] = (),
        reply_to: str | None = None,
    ) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.settings.mail_from
        message["To"] = to if isinstance(to, str) else ", ".join(to)
        message["Subject"] = subject
        if reply_to:
            message["Reply-To"] = reply_to
        domain = parseaddr(self.settings.mail_from)[1].rpartition("@")[2]
        message["Message-ID"] = make_msgid(domain=domain or None)
        message.set_content(text)
        if html is not None:
            message.add_alternative(html, subtype="html")
        for attachment in attachments:
            content_type = (
                attachment.content_type
                or mimetypes.guess_type(attachment.filename)[0]
                or "application/octet-stream"
            )
            maintype, _, subtype = content_type.partition("/")
            message.add_attachment(
                attachment.content, maintype=maintype, subtype=subtype, filename=attachment.filename
            )
        return message

    def render(
        self,
        *,
        to: str | Sequence[str],
        template: str,
        context: dict[str, Any] | None = None,
        attachments: Sequence[Attachment] = (),
    ) -> EmailMessage:
        rendered = self.templates.render(template, dict(context or {}))
        return self.build(
            to=to,
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            attachments=attachments,
        )

    async def send(self, message: EmailMessage) -> None:
        """Deliver now; SMTP errors propagate (the queue retries them)."""
        settings = self.settings
        if settings.smtp_host is None:
            raise RuntimeError("SMTP_HOST is not set; mail cannot be sent")
        # One span per message, in the trace of the task (and request) that sent it.
        with trace.get_tracer("app.mail").start_as_current_span(
            "mail send",
            kind=trace.SpanKind.CLIENT,
            attributes={"server.address": settings.smtp_host, "server.port": settings.smtp_port},
        ):
            try:
                await aiosmtplib.send(
                    message,
                    hostname=settings.smtp_host,
                    port=settings.smtp_port,
                    username=settings.smtp_username or None,
                    password=settings.smtp_password or None,
                    use_tls=settings.smtp_use_tls,
                    start_tls=settings.smtp_start_tls,
                    timeout=settings.smtp_timeout,
                )
            except Exception:
                metrics.MAIL_FAILED.inc()
                raise
        metrics.MAIL_SENT.inc()
        log.info("mail_sent", to=message["To"], subject=message["Subject"])

    async def send_template(
        self,
        *,
        to: str | Sequence[str],
        template: str,
        context: dict[str, Any] | None = None,
        attachments: Sequence[Attachment] = (),
    ) -> None:
        await self.send(
            self.render(to=to, template=template, context=context, attachments=attachments)
        )

    def queue(self, session: AsyncSession, message: EmailMessage) -> None:
        """Send from a worker, through the outbox: committed with the session's transaction,
        retried with backoff while the SMTP server fails, sent once."""
        enqueue(session, send_mail_task, message.as_string())

    def queue_template(
        self,
        session: AsyncSession,
        *,
        to: str | Sequence[str],
        template: str,
        context: dict[str, Any] | None = None,
    ) -> None:
        """Render and send from a worker, through the outbox (see `queue`); the context must
        be JSON values. A web process never loads the templates."""
        enqueue(session, send_template_task, to, template, dict(context or {}))


# `= TaskiqDepends()` lets tasks resolve it too (`bind_app` gives them the app).
async def get_mailer(request: Request = TaskiqDepends()) -> MailService:
    mailer: MailService = request.app.state.mailer
    return mailer


Mailer = Annotated[MailService, Depends(get_mailer)]


@broker.task(task_name="core.mail.send")
async def send_mail_task(
    raw_message: str, once: RunOnce = None, mailer: MailService = TaskiqDepends(get_mailer)
) -> None:
    message = email.message_from_string(raw_message, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    await mailer.send(message)


@broker.task(task_name="core.mail.send_template")
async def send_template_task(
    to: str | list[str],
    template: str,
    context: dict[str, Any],
    once: RunOnce = None,
    mailer: MailService = TaskiqDepends(get_mailer),
) -> None:
    await mailer.send_template(to=to, template=template, context=context)
