from __future__ import annotations

from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import DBSession
from app.core.errors import Conflict
from app.core.events import BaseEvent, drain, listener, publish
from app.core.outbox import OutboxEntry
from tests.support import queued_work_done

received: list[tuple[str, int]] = []


class ThingHappened(BaseEvent):
    thing_id: int


@listener(ThingHappened)
async def remember(event: ThingHappened) -> None:
    received.append(("local", event.thing_id))


@listener(ThingHappened)
async def explode(event: ThingHappened) -> None:
    raise RuntimeError("listener bug")


@listener(ThingHappened, queued=True)
async def remember_later(event: ThingHappened) -> None:
    assert isinstance(event, ThingHappened)
    received.append(("queued", event.thing_id))


async def _settle(app: FastAPI) -> None:
    await drain()
    await queued_work_done(app)


async def _outbox_entries(app: FastAPI) -> int:
    async with app.state.database.engine.connect() as connection:
        return int(await connection.scalar(select(func.count()).select_from(OutboxEntry)) or 0)


async def test_commit_delivers_to_local_and_queued_listeners(
    app: FastAPI, session: AsyncSession
) -> None:
    received.clear()
    publish(session, ThingHappened(thing_id=1))
    assert received == []  # nothing before the commit
    assert await _outbox_entries(app) == 0  # the queued listener is not visible yet either
    await session.execute(text("SELECT 1"))
    await session.commit()
    assert await _outbox_entries(app) == 1  # committed with the use case
    await _settle(app)
    assert sorted(received) == [("local", 1), ("queued", 1)]


async def test_rollback_discards_events(app: FastAPI, session: AsyncSession) -> None:
    received.clear()
    publish(session, ThingHappened(thing_id=2))
    await session.execute(text("SELECT 1"))
    await session.rollback()
    await session.commit()  # a later commit does not resurrect them
    await _settle(app)
    assert received == []
    assert await _outbox_entries(app) == 0


async def test_session_closed_without_commit_publishes_nothing(app: FastAPI) -> None:
    received.clear()
    async with app.state.database.sessionmaker() as session:
        publish(session, ThingHappened(thing_id=3))
        await session.execute(text("SELECT 1"))
    await _settle(app)
    assert received == []
    assert await _outbox_entries(app) == 0


async def test_in_request_listeners_run_after_response_and_failures_stay_isolated(
    app: FastAPI, client: AsyncClient
) -> None:
    received.clear()

    async def do_thing(session: DBSession) -> dict[str, bool]:
        publish(session, ThingHappened(thing_id=4))
        await session.commit()
        return {"ok": True}

    async def fail_thing(session: DBSession) -> dict[str, bool]:
        publish(session, ThingHappened(thing_id=5))
        raise Conflict("use case failed before commit")

    app.router.add_api_route("/_test/thing", do_thing, methods=["POST"])
    app.router.add_api_route("/_test/thing-fails", fail_thing, methods=["POST"])

    response = await client.post("/_test/thing")
    assert response.status_code == 200  # the exploding listener did not leak into it
    failed = await client.post("/_test/thing-fails")
    assert failed.status_code == 409
    await _settle(app)
    assert sorted(received) == [("local", 4), ("queued", 4)]
