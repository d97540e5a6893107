"""The users module's policies, gateway and CLI."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession
from typer.testing import CliRunner

import app.modules.users.policies as policies
from app.core.config import get_settings
from app.core.db import utcnow
from app.core.errors import NotFound
from app.modules.users import (
    EmailTaken,
    UserCreate,
    UserDTO,
    UsernameTaken,
    UsersDirectory,
    UsersGateway,
)
from app.modules.users.config import UsersSettings, load_users_settings
from app.modules.users.models import User
from tests.conftest import Services
from tests.factories.users import DEFAULT_PASSWORD, create_user


@dataclass
class _Actor:
    id: uuid.UUID
    role: str


def test_policies() -> None:
    me, other = _Actor(uuid.uuid4(), "user"), _Actor(uuid.uuid4(), "user")
    admin = _Actor(uuid.uuid4(), "admin")
    settings = UsersSettings(_env_file=None)
    assert policies.can_view(me, me.id)
    assert not policies.can_view(me, other.id)
    assert policies.can_view(admin, other.id)
    assert policies.can_update(admin, other)
    assert not policies.can_update(me, other)
    assert policies.can_list(admin)
    assert not policies.can_list(me)
    assert policies.can_manage(admin)
    assert not policies.can_manage(me)
    assert policies.can_delete(me, me, settings)
    assert not policies.can_delete(me, other, settings)
    assert policies.can_delete(admin, other, settings)
    strict = UsersSettings(_env_file=None, self_delete_allowed=False)
    assert not policies.can_delete(me, me, strict)


async def test_gateway_speaks_in_dtos(app: FastAPI, session: AsyncSession, user: User) -> None:
    gateway = UsersGateway(session, limiter=app.state.rate_limiter, mailer=app.state.mailer)
    found = await gateway.get_by_email("ALICE@example.com")
    assert isinstance(found, UserDTO)
    assert found.id == user.id
    assert not hasattr(found, "password_hash")
    assert await gateway.get_by_id(uuid.uuid4()) is None
    assert await gateway.sign_in("alice", DEFAULT_PASSWORD, client="ip:1") == found
    assert await gateway.sign_in("alice", "wrong", client="ip:1") is None
    assert await gateway.sign_in("ghost", "wrong", client="ip:1") is None

    created = await gateway.create(
        UserCreate(email="new@example.com", username="newbie", password=DEFAULT_PASSWORD)
    )
    assert created.is_verified is False
    assert not await gateway.mark_verified(created.id, "elsewhere@example.com")  # not its address
    assert await gateway.mark_verified(created.id, "NEW@example.com")
    await session.commit()  # the caller commits
    assert (await gateway.get_by_id(created.id)).is_verified is True  # type: ignore[union-attr]
    await gateway.set_password(created.id, "orbit-lantern-quietly")
    await session.commit()  # the caller commits
    assert await gateway.sign_in("new@example.com", "orbit-lantern-quietly", client="ip:1")
    with pytest.raises(NotFound):
        await gateway.set_password(uuid.uuid4(), "orbit-lantern-quietly")
    with pytest.raises(EmailTaken):
        await gateway.create(
            UserCreate(email="NEW@example.com", username="other", password=DEFAULT_PASSWORD)
        )
    with pytest.raises(UsernameTaken):
        await gateway.create(
            UserCreate(email="other@example.com", username="NEWBIE", password=DEFAULT_PASSWORD)
        )


async def test_the_directory_reads_committed_live_users_outside_a_transaction(
    app: FastAPI,
) -> None:
    async with app.state.database.sessionmaker() as session:
        listed = await create_user(session, username="listed")
        gone = await create_user(session, username="gone", deleted_at=utcnow())
    async with app.state.database.engine.connect() as connection:
        directory = UsersDirectory(connection)
        found = await directory.get(listed.id)
        assert isinstance(found, UserDTO)
        assert found.username == "listed"
        assert await directory.get(gone.id) is None
        assert await directory.get(uuid.uuid4()) is None


async def test_a_weaker_stored_hash_is_upgraded_on_sign_in(
    app: FastAPI, session: AsyncSession, user: User
) -> None:
    stronger = UsersSettings(
        _env_file=None,
        password_hash_time_cost=2,
        password_hash_memory_kib=1024,
        password_hash_parallelism=1,
    )
    old_hash = user.password_hash
    gateway = UsersGateway(session, stronger, limiter=app.state.rate_limiter)
    assert await gateway.sign_in("alice", DEFAULT_PASSWORD, client="ip:1")
    await session.refresh(user)
    assert user.password_hash != old_hash
    assert "t=2" in user.password_hash


def test_create_superuser_command(
    services: Services, monkeypatch: pytest.MonkeyPatch, app: object
) -> None:
    from app.cli import cli

    monkeypatch.setenv("DATABASE_URL", services.database_url)
    monkeypatch.setenv("REDIS_URL", services.redis_url)
    get_settings.cache_clear()
    load_users_settings.cache_clear()
    try:
        from app.modules.users import module

        assert module.cli is not None
        cli.add_typer(module.cli)
        runner = CliRunner()
        args = ["create-superuser", "--email", "boss@example.com", "--username", "boss"]
        created = runner.invoke(cli, args, env={"SUPERUSER_PASSWORD": DEFAULT_PASSWORD})
        assert created.exit_code == 0, created.output
        assert "created administrator boss" in created.output
        duplicate = runner.invoke(cli, args, env={"SUPERUSER_PASSWORD": DEFAULT_PASSWORD})
        assert duplicate.exit_code == 1
        invalid = runner.invoke(
            cli,
            ["create-superuser", "--email", "nope", "--username", "b"],
            env={"SUPERUSER_PASSWORD": DEFAULT_PASSWORD},
        )
        assert invalid.exit_code == 2
    finally:
        get_settings.cache_clear()
        load_users_settings.cache_clear()
