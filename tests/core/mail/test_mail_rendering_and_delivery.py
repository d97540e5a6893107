from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI

from app.core.mail import Attachment, MailService, MailTemplates
from tests.conftest import MailOutbox


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


async def test_queued_mail_is_retried_after_smtp_failure(
    mailer: MailService, mail_outbox: MailOutbox
) -> None:
    mail_outbox.fail_next(2)
    await mailer.queue_template(
        to="bob@example.com", template="demo/welcome", context={"name": "Bob", "link": "x"}
    )
    message = await mail_outbox.wait()
    assert message["Subject"] == "Welcome, Bob!"
    assert len(mail_outbox) == 1


async def test_app_mailer_discovers_module_templates(app: FastAPI) -> None:
    mailer: MailService = app.state.mailer
    assert isinstance(mailer.templates, MailTemplates)
