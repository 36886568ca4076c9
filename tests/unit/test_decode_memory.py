"""DecodeMemory, the weighted semaphore that bounds the encoder's decoding by memory: capacity, arrival
order, cancellation (waiting or just granted), and the clamp of a request bigger than everything."""

from __future__ import annotations

import asyncio

import pytest

from services.encoder.decode_memory import DecodeMemory


async def test_what_fits_is_granted_at_once_and_the_rest_waits_for_a_release():
    memory = DecodeMemory(100)
    assert await memory.acquire(60) == 60
    assert await memory.acquire(40) == 40
    waiting = asyncio.create_task(memory.acquire(30))
    await asyncio.sleep(0.01)
    assert not waiting.done() and memory.in_use == 100
    memory.release(40)
    assert await asyncio.wait_for(waiting, 1) == 30
    assert memory.in_use == 90


async def test_waiters_are_served_in_arrival_order_so_a_big_one_is_not_starved():
    memory = DecodeMemory(100)
    await memory.acquire(50)
    order: list[str] = []

    async def take(name: str, amount: int) -> None:
        await memory.acquire(amount)
        order.append(name)

    big = asyncio.create_task(take("big", 100))
    await asyncio.sleep(0.01)
    small = asyncio.create_task(take("small", 10))  # would fit now, but the big one came first
    await asyncio.sleep(0.01)
    assert order == []
    memory.release(50)
    await asyncio.wait_for(big, 1)
    assert order == ["big"] and not small.done()
    memory.release(100)
    await asyncio.wait_for(small, 1)
    assert order == ["big", "small"] and memory.in_use == 10


async def test_a_cancelled_waiter_leaves_the_queue_and_lets_the_next_one_in():
    memory = DecodeMemory(100)
    await memory.acquire(80)
    first = asyncio.create_task(memory.acquire(90))
    second = asyncio.create_task(memory.acquire(20))
    await asyncio.sleep(0.01)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await asyncio.wait_for(second, 1) == 20  # 80 + 20 fit once the head is gone
    assert memory.in_use == 100


async def test_a_waiter_cancelled_just_as_it_was_granted_gives_its_share_back():
    memory = DecodeMemory(100)
    await memory.acquire(100)
    waiting = asyncio.create_task(memory.acquire(70))
    await asyncio.sleep(0.01)
    memory.release(100)  # grants the waiter...
    waiting.cancel()  # ...which is cancelled before it runs again
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert memory.in_use == 0


async def test_more_than_the_capacity_waits_for_everything_then_runs_alone():
    memory = DecodeMemory(100)
    await memory.acquire(1)
    huge = asyncio.create_task(memory.acquire(10**9))
    await asyncio.sleep(0.01)
    assert not huge.done()
    memory.release(1)
    assert await asyncio.wait_for(huge, 1) == 100
    memory.release(100)
    assert memory.in_use == 0


def test_a_capacity_must_be_positive():
    with pytest.raises(ValueError):
        DecodeMemory(0)
