"""lipbatch.batched: calls made in one scheduling round share one worker-thread hop, each keeps its outcome."""

from __future__ import annotations

import threading

import pytest
import trio

from lipbatch import batched

pytestmark = pytest.mark.anyio


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of calls each worker-thread hop ran (the real hop runs them)."""
    sizes: list[int] = []
    real = trio.to_thread.run_sync

    async def counting(fn, calls, **kwargs):  # type: ignore[no-untyped-def]
        sizes.append(len(calls))
        return await real(fn, calls, **kwargs)

    monkeypatch.setattr(batched.trio.to_thread, "run_sync", counting)
    return sizes


async def test_calls_of_one_round_share_a_hop_and_each_gets_its_own_outcome(hops: list[int]) -> None:
    results: dict[int, object] = {}
    main = threading.get_ident()

    def work(i: int) -> tuple[int, bool]:
        if i % 3 == 0:
            raise ValueError(f"call {i} failed")
        return i * i, threading.get_ident() != main

    async def caller(i: int) -> None:
        try:
            results[i] = await batched.run_sync(lambda: work(i))
        except ValueError as exc:
            results[i] = str(exc)

    async with trio.open_nursery() as nursery:
        for i in range(10):
            nursery.start_soon(caller, i)
    assert hops == [10]
    assert results == {i: f"call {i} failed" if i % 3 == 0 else (i * i, True) for i in range(10)}


async def test_a_call_after_the_hop_left_goes_into_the_next_one(hops: list[int]) -> None:
    assert await batched.run_sync(lambda: 1) == 1
    assert await batched.run_sync(lambda: 2) == 2
    assert hops == [1, 1]


async def test_a_queued_call_runs_even_when_its_caller_is_cancelled(hops: list[int]) -> None:
    ran: list[str] = []
    release = threading.Event()

    def slow() -> None:
        release.wait(5)
        ran.append("slow")

    def queued() -> None:
        ran.append("queued")

    async def follower(scope_holder: list[trio.CancelScope]) -> None:
        with trio.CancelScope() as scope:
            scope_holder.append(scope)
            await batched.run_sync(queued)
            ran.append("returned")  # like trio.to_thread.run_sync: the call's outcome comes back,
            await trio.lowlevel.checkpoint()  # and the cancellation arrives at the next checkpoint
            ran.append("not reached")
        ran.append("follower done")

    holder: list[trio.CancelScope] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(batched.run_sync, slow)
        nursery.start_soon(follower, holder)
        await trio.sleep(0.05)  # both queued in one hop, which waits in ``slow``
        holder[0].cancel()
        await trio.sleep(0.05)
        assert "returned" not in ran  # the follower still waits: its hop has not finished
        release.set()
    assert hops == [2]
    assert sorted(ran[:2]) == ["queued", "slow"]  # in the order the two were queued
    assert ran[2:] == ["returned", "follower done"]


async def test_a_leader_cancelled_while_waiting_for_a_thread_still_runs_the_batch() -> None:
    """With every worker thread taken, the hop waits for one; cancelling the task that asked first
    must not drop the calls the others queued behind it."""
    ran: list[int] = []
    limiter = trio.CapacityLimiter(1)
    release = threading.Event()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trio._threads, "current_default_thread_limiter", lambda: limiter)

        async def caller(i: int, scope_holder: list[trio.CancelScope]) -> None:
            with trio.CancelScope() as scope:
                scope_holder.append(scope)
                await batched.run_sync(lambda: ran.append(i))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, lambda: release.wait(5))  # holds the only thread
            await trio.sleep(0.05)
            scopes: list[trio.CancelScope] = []
            for i in range(3):
                nursery.start_soon(caller, i, scopes)
            await trio.sleep(0.05)
            for scope in scopes:
                scope.cancel()
            await trio.sleep(0.05)
            release.set()
    assert sorted(ran) == [0, 1, 2]
