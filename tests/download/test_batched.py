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
    real = batched._hop

    async def counting(calls):  # type: ignore[no-untyped-def]
        sizes.append(len(calls))
        return await real(calls)

    monkeypatch.setattr(batched, "_hop", counting)
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


async def test_a_leader_cancelled_while_its_hop_runs_still_delivers_every_call(hops: list[int]) -> None:
    """Cancelling the task that asked first must not drop the calls the others queued behind it."""
    ran: list[int] = []
    got: list[int] = []
    release = threading.Event()

    started: list[int] = []

    def work(i: int) -> int:
        started.append(i)
        if len(started) == 1:  # the first call of the hop holds it
            release.wait(5)
        ran.append(i)
        return i

    async def caller(i: int, scope_holder: list[trio.CancelScope]) -> None:
        with trio.CancelScope() as scope:
            scope_holder.append(scope)
            got.append(await batched.run_sync(lambda: work(i)))

    async with trio.open_nursery() as nursery:
        scopes: list[trio.CancelScope] = []
        for i in range(3):
            nursery.start_soon(caller, i, scopes)
        await trio.sleep(0.05)
        for scope in scopes:
            scope.cancel()
        await trio.sleep(0.05)
        assert ran == []  # the hop still waits in its first call
        release.set()
    assert hops == [3]
    assert ran == started and sorted(ran) == [0, 1, 2]
    assert sorted(got) == [0, 1, 2]  # each caller got its call's outcome before its cancellation


async def test_a_follow_up_runs_once_per_key_after_every_call_of_the_hop(hops: list[int]) -> None:
    log: list[str] = []

    def fails() -> None:
        log.append("sync b")
        raise OSError("b cannot sync")

    def work(i: int, key: str) -> int:
        log.append(f"call {i}")
        follow_up = fails if key == "b" else (lambda: log.append(f"sync {key}"))
        taken = batched.once_per_round(key, follow_up)
        log.append(f"{i} {'took' if taken else 'joined'} {key}")
        return i

    outcomes: dict[int, object] = {}

    async def caller(i: int, key: str) -> None:
        try:
            outcomes[i] = await batched.run_sync(lambda: work(i, key))
        except OSError as exc:
            outcomes[i] = str(exc)

    async with trio.open_nursery() as nursery:
        for i, key in enumerate(["a", "b", "a", "c", "b"]):
            nursery.start_soon(caller, i, key)
    assert hops == [5]
    calls, syncs = log[:10], log[10:]  # every call first (in the order queued), then each follow-up once
    assert sorted(line for line in calls if line.startswith("call")) == [f"call {i}" for i in range(5)]
    took = [line.split()[2] for line in calls if " took " in line]
    assert sorted(took) == ["a", "b", "c"] and sum(" joined " in line for line in calls) == 2
    assert syncs == [f"sync {key}" for key in took]  # in the order the keys were first asked for
    assert outcomes == {0: 0, 1: "b cannot sync", 2: 2, 3: 3, 4: "b cannot sync"}


def test_a_follow_up_outside_a_hop_runs_at_once() -> None:
    log: list[str] = []
    assert batched.once_per_round("k", lambda: log.append("now")) is True
    assert batched.once_per_round("k", lambda: log.append("again")) is True
    assert log == ["now", "again"]
