"""Domain events: published on a session, dispatched only after its transaction commits.

class UserRegistered(BaseEvent):
    user_id: int

publish(session, UserRegistered(user_id=user.id)); await session.commit()

@listener(UserRegistered)                  # in-process, after the response is sent
async def welcome(event: UserRegistered) -> None: ...

@listener(UserRegistered, queued=True)     # through the outbox: commits with the use case, retried
async def send_mail(event: UserRegistered, mail: Annotated[...]) -> None: ...
"""

from app.core.events.dispatch import (
    EVENTS_MIDDLEWARE_ID,
    BaseEvent,
    ListenerHandler,
    add_events_middleware,
    drain,
    listener,
    listeners_for,
    publish,
)

__all__ = [
    "EVENTS_MIDDLEWARE_ID",
    "BaseEvent",
    "ListenerHandler",
    "add_events_middleware",
    "drain",
    "listener",
    "listeners_for",
    "publish",
]
