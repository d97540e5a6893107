"""Reactions of the organizations module to other modules' events."""

from __future__ import annotations

from app.core.db import Database, get_database
from app.core.events import listener
from app.core.mail import MailService, get_mailer
from app.core.queue import TaskiqDepends
from app.modules.organizations.config import OrganizationsSettings, get_organizations_settings
from app.modules.organizations.services import OrganizationsService
from app.modules.users import UserDeleted, UsersGateway


@listener(UserDeleted, queued=True)
async def end_memberships(
    event: UserDeleted,
    database: Database = TaskiqDepends(get_database),
    settings: OrganizationsSettings = TaskiqDepends(get_organizations_settings),
    mailer: MailService = TaskiqDepends(get_mailer),
) -> None:
    """A deleted account leaves its organizations: queued in the transaction that deletes it,
    retried within the outbox's attempts, then kept as a dead entry for `app outbox retry`
    (running twice does no harm)."""
    async with database.sessionmaker() as session:
        service = OrganizationsService(
            session, settings, users=UsersGateway(session), mailer=mailer
        )
        await service.end_memberships(user_id=event.user_id)
