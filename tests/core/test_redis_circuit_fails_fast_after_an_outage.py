"""RedisCircuit: after a call fails for an outage, later calls fail at once until
REDIS_RETRY_AFTER has passed; an error that is no outage (a bad command) opens nothing."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.core.redis import RedisCircuit, RedisUnavailable


@pytest.mark.parametrize(
    "outage", [RedisConnectionError("refused"), RedisTimeoutError("no answer"), OSError("reset")]
)
async def test_an_outage_opens_the_circuit_for_retry_after(outage: Exception) -> None:
    circuit = RedisCircuit(retry_after=0.2)
    with pytest.raises(type(outage)):
        async with circuit:
            raise outage
    assert circuit.is_open
    with pytest.raises(RedisUnavailable):
        async with circuit:
            raise AssertionError("not reached: the call is not made")
    await asyncio.sleep(0.25)
    assert not circuit.is_open
    async with circuit:
        pass  # asked again


async def test_an_error_that_is_no_outage_leaves_it_closed() -> None:
    circuit = RedisCircuit(retry_after=2.0)
    with pytest.raises(ResponseError):
        async with circuit:
            raise ResponseError("WRONGTYPE")
    assert not circuit.is_open
