from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.mail import Attachment, MailService, MailTemplates
from app.core.outbox import OutboxEntry
from tests.conftest import MailOutbox
from tests.support import queued_work_done


@pytest.fixture
def mailer(app: FastAPI, tmp_path: Path) -> MailService:
    folder = tmp_path / "demo"
    folder.mkdir()
    (folder / "welcome.subject.txt").write_text("Welcome, {{ name }}!\n")
    (folder / "welcome.txt").write_text("Hello {{ name }}, verify: {{ link }}\n")
    (folder / "welcome.html").write_text('<p>Hello {{ name }}, <a href="{{ link }}">verify</a></p>')
    return MailService(app.state.settings, MailTemplates({"demo": folder}))


async def test_send_template_has_text_html_and_attachment(
    mailer: MailService, mail_outbox: MailOutbox
) -> None:
    await mailer.send_template(
        to="ada@example.com",
        template="demo/welcome",
        context={"name": "<Ada>", "link": "http://test/verify?t=abc"},
        attachments=[Attachment("notes.txt", b"attached")],
    )
    message = await mail_outbox.wait()
    assert message["Subject"] == "Welcome, <Ada>!"
    assert message["To"] == "ada@example.com"
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None
    assert "Hello <Ada>" in text.get_content()
    assert html is not None
    assert "Hello &lt;Ada&gt;" in html.get_content()
    attachments = list(message.iter_attachments())
    assert [a.get_filename() for a in attachments] == ["notes.txt"]
    assert attachments[0].get_content() == "attached"
    assert mail_outbox.links() == ["http://test/verify?t=abc"]


async def test_queued_mail_goes_out_with_the_commit_and_is_retried_after_smtp_failure(
    app: FastAPI, session: AsyncSession, mailer: MailService, mail_outbox: MailOutbox
) -> None:
    mail_outbox.fail_next(2)
    message = mailer.render(
        to="bob@example.com", template="demo/welcome", context={"name": "Bob", "link": "x"}
    )
    mailer.queue(session, message)
    await asyncio.sleep(0.3)
    assert len(mail_outbox) == 0  # nothing leaves before the commit
    await session.commit()
    received = await mail_outbox.wait()
    assert received["Subject"] == "Welcome, Bob!"
    await queued_work_done(app)
    assert len(mail_outbox) == 1
    entry = (await session.scalars(select(OutboxEntry))).one()
    assert (entry.status, entry.attempts) == ("done", 3)  # two SMTP failures, then sent


async def test_template_mail_is_rendered_by_the_worker(
    app: FastAPI, session: AsyncSession, mail_outbox: MailOutbox
) -> None:
    mailer: MailService = app.state.mailer
    mailer.queue_template(
        session,
        to="carol@example.com",
        template="users/password_changed",
        context={"username": "carol"},
    )
    await session.flush()
    entry = (await session.scalars(select(OutboxEntry))).one()
    assert entry.task_name == "core.mail.send_template"  # the template, not its rendering
    await session.commit()
    received = await mail_outbox.wait()
    assert received["To"] == "carol@example.com"
    assert "carol" in received.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]


async def test_app_mailer_discovers_module_templates(app: FastAPI) -> None:
    mailer: MailService = app.state.mailer
    assert isinstance(mailer.templates, MailTemplates)
