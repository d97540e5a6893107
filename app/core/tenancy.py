"""Tenancy: which organization a request acts in, and tenant-owned data by construction.

    class Project(UUIDPrimaryKeyMixin, TenantOwned, Base): ...      # adds organization_id

    class ProjectRepository(TenantRepository[Project]):              # every query filtered
        model = Project

    @router.get("/projects")
    async def list_projects(session: TenantSession, ...) -> ...     # X-Organization: <slug>

The organization comes from the `X-Organization` header (a slug) and is checked against the
caller's membership on every request: a non-member gets a 404, as for an organization that does
not exist. Core knows no module: the organizations module provides the `Memberships` lookup
through its spec (`ModuleSpec(memberships=...)`), as auth provides the `Authenticator`.

Two layers keep tenants apart. `TenantRepository` adds `organization_id = <current>` to every
query it builds and stamps it on every row it creates; it reads the organization from the
session, so a service cannot forget it. Under it, PostgreSQL's row-level security: each
tenant-owned table has a policy keyed by `app.organization_id`, which `TenantSession` sets at
the start of every transaction (`set_config(..., true)`: transaction-local). The app connects
as a role that owns no table (DB_ROLE, `app_tenant` by default), so the policies apply to it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Protocol, TypeVar

from fastapi import Depends, Header, Request
from sqlalchemy import ColumnElement, ForeignKey, Select, Uuid, event, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, SessionTransaction, mapped_column

from app.core.auth import ActivePrincipal
from app.core.config import Settings
from app.core.db import BaseRepository, Database, ListParams, Slice
from app.core.errors import Forbidden, NotFound

# The per-transaction setting the row-level security policies read.
TENANT_SETTING = "app.organization_id"
# Organization roles, weakest first: a role includes the powers of those before it.
ORG_ROLES: tuple[str, ...] = ("member", "admin", "owner")
ORGANIZATION_HEADER = "X-Organization"
_SESSION_KEY = "app.organization_id"
_SET_TENANT = text("SELECT set_config(:name, :value, true)")


@dataclass(frozen=True, slots=True)
class CurrentOrganization:
    """The organization a request acts in, and the caller's role in it."""

    id: uuid.UUID
    slug: str
    role: str


class Memberships(Protocol):
    """Answers whether an account is a member of a live organization, and with what role."""

    async def find(self, *, user_id: uuid.UUID, slug: str) -> CurrentOrganization | None: ...


MembershipsFactory = Callable[[Settings, Database], Memberships]


async def get_memberships(request: Request) -> Memberships:
    memberships: Memberships | None = getattr(request.app.state, "memberships", None)
    if memberships is None:
        raise RuntimeError("no module provides memberships (ModuleSpec.memberships)")
    return memberships


async def get_current_organization(
    principal: ActivePrincipal,
    memberships: Annotated[Memberships, Depends(get_memberships)],
    organization: Annotated[
        str,
        Header(
            alias=ORGANIZATION_HEADER,
            min_length=1,
            max_length=100,
            description="slug of the organization the request acts in",
        ),
    ],
) -> CurrentOrganization:
    """The organization named by the header, if the caller is a member of it; else 404 (the
    same for one that does not exist: a stranger learns nothing). Asked on every request, so
    a removed member's next request is refused."""
    current = await memberships.find(user_id=principal.id, slug=organization.strip().lower())
    if current is None:
        raise NotFound("Organization not found")
    return current


CurrentOrg = Annotated[CurrentOrganization, Depends(get_current_organization)]


def has_org_role(organization: CurrentOrganization, role: str) -> bool:
    """Whether the caller's role in the organization is `role` or a stronger one."""
    return ORG_ROLES.index(organization.role) >= ORG_ROLES.index(role)


def require_org_role(role: str) -> Callable[..., Awaitable[CurrentOrganization]]:
    """A dependency that lets through members whose role is `role` or stronger; else 403."""
    if role not in ORG_ROLES:
        raise ValueError(f"unknown organization role {role!r}; known: {', '.join(ORG_ROLES)}")

    async def dependency(organization: CurrentOrg) -> CurrentOrganization:
        if not has_org_role(organization, role):
            raise Forbidden(f"This action needs the {role} role in the organization")
        return organization

    return dependency


# --- the tenant-scoped session -------------------------------------------------------------


def _set_tenant_setting(
    session: Session, transaction: SessionTransaction, connection: Connection
) -> None:
    connection.execute(
        _SET_TENANT, {"name": TENANT_SETTING, "value": str(session.info[_SESSION_KEY])}
    )


def bind_tenant(session: AsyncSession, organization_id: uuid.UUID) -> AsyncSession:
    """Scope `session` to one organization: its tenant repositories filter by it, and each of
    its transactions starts by setting `app.organization_id` for the row-level security
    policies (with a bound parameter; local to the transaction, so a pooled connection
    carries nothing to the next user)."""
    if session.info.get(_SESSION_KEY) not in (None, organization_id):
        raise RuntimeError("the session is already bound to another organization")
    session.info[_SESSION_KEY] = organization_id
    if not event.contains(session.sync_session, "after_begin", _set_tenant_setting):
        event.listen(session.sync_session, "after_begin", _set_tenant_setting)
    return session


def session_tenant(session: AsyncSession) -> uuid.UUID:
    """The organization the session is bound to; an unbound session is a programming error."""
    organization_id: uuid.UUID | None = session.info.get(_SESSION_KEY)
    if organization_id is None:
        raise RuntimeError("tenant-owned data needs a session bound to an organization")
    return organization_id


async def get_tenant_session(
    request: Request, organization: CurrentOrg
) -> AsyncIterator[AsyncSession]:
    """One session per request, bound to the current organization."""
    database: Database = request.app.state.database
    async with database.sessionmaker() as session:
        yield bind_tenant(session, organization.id)


TenantSession = Annotated[AsyncSession, Depends(get_tenant_session)]


# --- tenant-owned models and their repositories --------------------------------------------


class TenantOwned:
    """Adds `organization_id` (indexed; deleted with its organization). Put it in the model's
    unique constraints: `UniqueConstraint("organization_id", "name")`. Its migration enables
    row-level security with `tenant_policy_sql(table)`."""

    organization_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )


ModelT = TypeVar("ModelT", bound=DeclarativeBase)


class TenantRepository(BaseRepository[ModelT]):
    """A repository of a tenant-owned model: every query it builds is filtered by the session's
    organization, and every row it creates belongs to it. Row-level security backs it up."""

    model: ClassVar[type[DeclarativeBase]]

    def _tenant_clause(self, session: AsyncSession) -> ColumnElement[bool]:
        clause: ColumnElement[bool] = self._column("organization_id") == session_tenant(session)
        return clause

    def _tenant_query(
        self, session: AsyncSession, *, include_deleted: bool = False
    ) -> Select[ModelT]:
        query = self._base_query(include_deleted=include_deleted)
        return query.where(self._tenant_clause(session))

    async def get_or_none(
        self, session: AsyncSession, *, id: Any, include_deleted: bool = False
    ) -> ModelT | None:
        query = self._tenant_query(session, include_deleted=include_deleted)
        result = await session.execute(query.where(self._column("id") == id))
        return result.scalar_one_or_none()

    async def get_by(self, session: AsyncSession, **criteria: Any) -> ModelT | None:
        query = self._tenant_query(session)
        for name, value in criteria.items():
            query = query.where(self._column(name) == value)
        result = await session.execute(query.limit(1))
        return result.scalar_one_or_none()

    async def create(self, session: AsyncSession, **values: Any) -> ModelT:
        organization_id = session_tenant(session)
        if values.get("organization_id", organization_id) != organization_id:
            raise Forbidden("A record cannot be created in another organization")
        return await super().create(session, **{**values, "organization_id": organization_id})

    async def update(self, session: AsyncSession, instance: ModelT, **values: Any) -> ModelT:
        owner = getattr(instance, "organization_id", None)
        if owner != session_tenant(session) or values.get("organization_id", owner) != owner:
            raise Forbidden("A record cannot move to another organization")
        return await super().update(session, instance, **values)

    async def delete(self, session: AsyncSession, instance: ModelT) -> None:
        if getattr(instance, "organization_id", None) != session_tenant(session):
            raise NotFound(self.not_found_message)
        await super().delete(session, instance)

    async def list(
        self,
        session: AsyncSession,
        params: ListParams,
        *,
        where: Sequence[ColumnElement[bool]] = (),
    ) -> Slice[ModelT]:
        return await super().list(session, params, where=(self._tenant_clause(session), *where))


# --- migrations ----------------------------------------------------------------------------


def tenant_policy_sql(table: str) -> list[str]:
    """The statements that put a tenant-owned table under row-level security: rows are seen,
    changed and added only where `organization_id` is the transaction's `app.organization_id`.
    Unset (or reset to '' after an earlier transaction), it matches no row: no error, no data.
    The table owner and superusers bypass it (no FORCE): migrations run as the owner. Deleting
    an organization removes its rows through the foreign key's cascade, which PostgreSQL runs
    outside row-level security."""
    current = f"NULLIF(current_setting('{TENANT_SETTING}', true), '')::uuid"
    return [
        f'ALTER TABLE "{table}" ENABLE ROW LEVEL SECURITY',
        f'CREATE POLICY tenant_isolation ON "{table}" '
        f"USING (organization_id = {current}) WITH CHECK (organization_id = {current})",
    ]


def drop_tenant_policy_sql(table: str) -> list[str]:
    return [
        f'DROP POLICY IF EXISTS tenant_isolation ON "{table}"',
        f'ALTER TABLE "{table}" DISABLE ROW LEVEL SECURITY',
    ]
