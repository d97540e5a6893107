"""Mail: the `Mailer` dependency, module templates ("auth/verify_email"), send now or through
the outbox."""

from app.core.mail.service import (
    Attachment,
    Mailer,
    MailService,
    MailTemplates,
    RenderedMail,
    get_mailer,
    send_mail_task,
    send_template_task,
)

__all__ = [
    "Attachment",
    "MailService",
    "MailTemplates",
    "Mailer",
    "RenderedMail",
    "get_mailer",
    "send_mail_task",
    "send_template_task",
]
