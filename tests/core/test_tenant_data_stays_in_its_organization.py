"""Tenant-owned data, through a sample module (`tests/core/tenant_sample/notes`): lists, gets,
updates and deletes see only the current organization's rows, and under the repositories
PostgreSQL's row-level security does the same for raw SQL in the app's role."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.core.db import rows_affected
from app.core.errors import Forbidden
from app.core.modules import DEFAULT_PACKAGES
from app.core.tenancy import bind_tenant, tenant_policy_sql
from app.main import create_app
from app.modules.organizations.models import Organization
from tests.conftest import Services, make_settings
from tests.core.tenant_sample.notes.models import NoteBase
from tests.core.tenant_sample.notes.routes import NoteRepository
from tests.factories.organizations import add_member, create_organization
from tests.factories.users import create_user
from tests.modules.conftest import Headers, bearer, login
from tests.support import http_client

NOTES_URL = "/api/v1/notes"
pytestmark = pytest.mark.xdist_group("tenant_sample")


@pytest.fixture(scope="module")
async def notes_app(services: Services, owner_engine: AsyncEngine) -> AsyncIterator[FastAPI]:
    app = create_app(
        make_settings(services), module_packages=(*DEFAULT_PACKAGES, "tests.core.tenant_sample")
    )
    table = NoteBase.metadata.tables["test_notes"]
    async with owner_engine.begin() as connection:  # as a migration would, as the owner
        await connection.run_sync(lambda sync: table.create(sync, checkfirst=True))
        for statement in tenant_policy_sql(table.name):
            await connection.execute(text(statement))
    async with LifespanManager(app):
        yield app
    async with owner_engine.begin() as connection:
        await connection.run_sync(lambda sync: table.drop(sync))


@pytest.fixture
async def http(notes_app: FastAPI, owner_engine: AsyncEngine) -> AsyncIterator[AsyncClient]:
    async with http_client(notes_app) as client:
        yield client
    async with owner_engine.begin() as connection:
        await connection.execute(text("TRUNCATE test_notes, organizations, users CASCADE"))


@pytest.fixture
async def db(notes_app: FastAPI) -> AsyncIterator[AsyncSession]:
    async with notes_app.state.database.sessionmaker() as session:
        yield session


@pytest.fixture
async def two_orgs(
    http: AsyncClient, db: AsyncSession
) -> tuple[Organization, Organization, Headers]:
    """acme and globex, both with ann as a member: one sign-in, two organizations."""
    ann = await create_user(db, email="ann@example.com", username="ann")
    bob = await create_user(db, email="bob@example.com", username="bob")
    acme = await create_organization(db, owner_id=ann.id, slug="acme")
    globex = await create_organization(db, owner_id=bob.id, slug="globex")
    await add_member(db, globex, ann.id)
    return acme, globex, bearer((await login(http, "ann"))["access_token"])


def _in(headers: Headers, organization: Organization) -> Headers:
    return {**headers, "X-Organization": organization.slug}


async def _note(http: AsyncClient, headers: Headers, title: str) -> str:
    response = await http.post(NOTES_URL, json={"title": title}, headers=headers)
    assert response.status_code == 201, response.text
    note_id: str = response.json()["id"]
    return note_id


async def test_lists_gets_updates_and_deletes_see_only_the_current_organization(
    http: AsyncClient, two_orgs: tuple[Organization, Organization, Headers]
) -> None:
    acme, globex, headers = two_orgs
    in_acme, in_globex = _in(headers, acme), _in(headers, globex)
    mine = await _note(http, in_acme, "plan")
    theirs = await _note(http, in_globex, "plan")  # the same title: unique per organization

    listed = (await http.get(NOTES_URL, headers=in_acme)).json()
    assert [item["id"] for item in listed["items"]] == [mine]
    assert listed["total"] == 1
    assert (await http.get(f"{NOTES_URL}/{theirs}", headers=in_acme)).status_code == 404
    patched = await http.patch(f"{NOTES_URL}/{theirs}", json={"title": "x"}, headers=in_acme)
    assert patched.status_code == 404
    assert (await http.delete(f"{NOTES_URL}/{theirs}", headers=in_acme)).status_code == 404
    # An organization id in the body is refused, not obeyed.
    moved = await http.post(
        NOTES_URL, json={"title": "y", "organization_id": str(globex.id)}, headers=in_acme
    )
    assert moved.status_code == 422

    kept = await http.get(f"{NOTES_URL}/{theirs}", headers=in_globex)
    assert kept.status_code == 200
    assert kept.json()["title"] == "plan"
    assert (await http.delete(f"{NOTES_URL}/{mine}", headers=in_acme)).status_code == 204
    assert (await http.get(NOTES_URL, headers=in_globex)).json()["total"] == 1


async def test_a_caller_who_is_not_a_member_gets_404(
    http: AsyncClient, db: AsyncSession, two_orgs: tuple[Organization, Organization, Headers]
) -> None:
    acme, _, _ = two_orgs
    await create_user(db, email="eve@example.com", username="eve")
    eve = bearer((await login(http, "eve"))["access_token"])
    assert (await http.get(NOTES_URL, headers=_in(eve, acme))).status_code == 404
    assert (await http.get(NOTES_URL, headers=eve)).status_code == 422  # no organization named


async def test_raw_sql_with_no_filter_sees_and_writes_only_the_sessions_organization(
    notes_app: FastAPI, http: AsyncClient, two_orgs: tuple[Organization, Organization, Headers]
) -> None:
    acme, globex, headers = two_orgs
    await _note(http, _in(headers, acme), "a1")
    await _note(http, _in(headers, acme), "a2")
    await _note(http, _in(headers, globex), "g1")
    sessionmaker = notes_app.state.database.sessionmaker

    async with sessionmaker() as session:
        bind_tenant(session, acme.id)
        rows = (await session.execute(text("SELECT * FROM test_notes"))).mappings().all()
        assert sorted(row["title"] for row in rows) == ["a1", "a2"]
        assert {row["organization_id"] for row in rows} == {acme.id}
        await session.commit()
        # The next transaction of the same session is scoped again.
        count = await session.scalar(text("SELECT count(*) FROM test_notes"))
        assert count == 2
        with pytest.raises(DBAPIError, match="row-level security"):
            await session.execute(
                text(
                    "INSERT INTO test_notes (id, organization_id, title, created_at, updated_at)"
                    " VALUES (:id, :org, 'sneaky', now(), now())"
                ),
                {"id": uuid.uuid4(), "org": globex.id},
            )
        await session.rollback()
        moved = await session.execute(
            text("UPDATE test_notes SET title = 'moved' WHERE title = 'g1'")
        )
        assert rows_affected(moved) == 0
        await session.rollback()

    # No organization set (a plain session, a pooled connection after a tenant transaction):
    # no rows, and no error.
    async with sessionmaker() as session:
        assert await session.scalar(text("SELECT count(*) FROM test_notes")) == 0
    async with notes_app.state.database.engine.connect() as connection:
        assert await connection.scalar(text("SELECT count(*) FROM test_notes")) == 0


async def test_the_app_acts_as_a_role_that_is_no_superuser_and_owns_no_table(
    notes_app: FastAPI,
) -> None:
    async with notes_app.state.database.engine.connect() as connection:
        row = (
            await connection.execute(
                text(
                    "SELECT current_user AS name, rolsuper, rolbypassrls,"
                    " (SELECT tableowner FROM pg_tables WHERE tablename = 'test_notes') AS owner"
                    " FROM pg_roles WHERE rolname = current_user"
                )
            )
        ).one()
    assert row.name == "app_tenant"
    assert row.rolsuper is False
    assert row.rolbypassrls is False
    assert row.owner != row.name


async def test_the_repository_needs_an_organization_and_keeps_rows_in_it(
    notes_app: FastAPI, two_orgs: tuple[Organization, Organization, Headers]
) -> None:
    acme, globex, _ = two_orgs
    notes = NoteRepository()
    async with notes_app.state.database.sessionmaker() as session:
        with pytest.raises(RuntimeError, match="bound to an organization"):
            await notes.create(session, title="nowhere")
        bind_tenant(session, acme.id)
        with pytest.raises(Forbidden):
            await notes.create(session, title="elsewhere", organization_id=globex.id)
        note = await notes.create(session, title="here")
        assert note.organization_id == acme.id
        with pytest.raises(Forbidden):
            await notes.update(session, note, organization_id=globex.id)
        with pytest.raises(RuntimeError, match="another organization"):
            bind_tenant(session, globex.id)
        await session.rollback()
