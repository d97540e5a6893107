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


async def _an_outage(circuit: RedisCircuit, outage: Exception | None = None) -> None:
    """One call that fails for an outage (refused, unless told otherwise)."""
    failure = outage or RedisConnectionError("refused")
    with pytest.raises(type(failure)):
        async with circuit:
            raise failure


async def _calls_answered(circuit: RedisCircuit, count: int) -> int:
    """`count` calls at once, each holding its call a moment; how many went through."""
    answered = 0

    async def call() -> None:
        nonlocal answered
        async with circuit:
            await asyncio.sleep(0.01)
            answered += 1

    await asyncio.gather(*(call() for _ in range(count)))
    return answered


async def test_after_the_wait_one_call_probes_while_the_others_still_fail_at_once() -> None:
    circuit = RedisCircuit(retry_after=0.05)
    await _an_outage(circuit, RedisTimeoutError("no answer"))
    await asyncio.sleep(0.06)
    assert not circuit.is_open
    probing, answer = asyncio.Event(), asyncio.Event()

    async def probe(fails: bool) -> None:
        async with circuit:
            probing.set()
            await answer.wait()  # a frozen Redis: the probe waits for its timeout
            if fails:
                raise RedisTimeoutError("still no answer")

    # The probe fails: the others were refused meanwhile, and the wait starts again.
    first = asyncio.create_task(probe(fails=True))
    await probing.wait()
    assert circuit.is_open
    with pytest.raises(RedisUnavailable):
        async with circuit:
            raise AssertionError("not reached: only the probe asks Redis")
    answer.set()
    with pytest.raises(RedisTimeoutError):
        await first
    assert circuit.is_open
    with pytest.raises(RedisUnavailable):
        async with circuit:
            pass

    # The next probe is answered: every call goes through again.
    await asyncio.sleep(0.06)
    probing.clear()
    answer.clear()
    second = asyncio.create_task(probe(fails=False))
    await probing.wait()
    answer.set()
    await second
    assert not circuit.is_open
    assert await _calls_answered(circuit, 5) == 5


async def test_a_cancelled_probe_lets_the_next_call_probe() -> None:
    circuit = RedisCircuit(retry_after=0.01)
    await _an_outage(circuit)
    await asyncio.sleep(0.02)

    async def hangs() -> None:
        async with circuit:
            await asyncio.sleep(10)

    probe = asyncio.create_task(hangs())
    await asyncio.sleep(0.01)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    async with circuit:
        pass  # this call is the probe now, and Redis answers it
    assert not circuit.is_open


async def test_no_wait_means_no_circuit() -> None:
    circuit = RedisCircuit(retry_after=0)
    await _an_outage(circuit)
    assert await _calls_answered(circuit, 2) == 2  # both ask Redis: no probe, no refusal


async def test_a_probe_refused_by_its_own_circuit_keeps_it_open() -> None:
    circuit = RedisCircuit(retry_after=0.01)
    await _an_outage(circuit)
    await asyncio.sleep(0.02)

    async def probe_asking_again() -> None:
        # The probe asks again inside itself: refused, as the probe is under way, so Redis
        # answered nothing.
        async with circuit, circuit:
            pass

    with pytest.raises(RedisUnavailable):
        await probe_asking_again()
    # Still half-open: the next call is a probe, and a call made meanwhile is refused.
    probing, answer = asyncio.Event(), asyncio.Event()

    async def probe() -> None:
        async with circuit:
            probing.set()
            await answer.wait()

    task = asyncio.create_task(probe())
    await probing.wait()
    with pytest.raises(RedisUnavailable):
        async with circuit:
            pass
    answer.set()
    await task
    assert not circuit.is_open
