"""Downloads against a real loopback origin that drops, truncates, lies, expires and refuses Range."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest
import trio

from lipbatch.download import CorruptDownloadError, Downloaded, ResultExpiredError, download
from lipbatch.errors import PermanentError, TransientError
from lipbatch.hashing import file_sha256

pytestmark = pytest.mark.anyio


@pytest.fixture
async def http() -> httpx.AsyncClient:
    # the shared client carries provider credentials; none of them may reach a result URL
    headers = {"Authorization": "Bearer sk-secret", "X-API-KEY": "k-secret", "X-API-ID": "id-secret"}
    cookies = {"session": "c-secret"}
    async with httpx.AsyncClient(headers=headers, cookies=cookies, auth=("user", "pw-secret"), timeout=10) as client:
        yield client


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


async def _get(http, origin, tmp_path: Path, **kwargs) -> Downloaded:
    return await download(http, origin.url, tmp_path / "out" / "clip.mp4", retry_delay=0, chunk_size=4096, **kwargs)


async def test_download_streams_verifies_and_renames(http, origin, tmp_path: Path) -> None:
    result = await _get(http, origin, tmp_path)
    dest = tmp_path / "out" / "clip.mp4"
    assert result == Downloaded(sha256=hashlib.sha256(origin.body).hexdigest(), size=len(origin.body), path=dest)
    assert dest.read_bytes() == origin.body
    assert file_sha256(dest) == result.sha256
    placed = dest.stat()  # what the hash cache is told: the placed file's size and mtime
    assert result.stat is not None and (result.stat.st_size, result.stat.st_mtime_ns, result.stat.st_ino) == (
        placed.st_size, placed.st_mtime_ns, placed.st_ino)
    assert _leftovers(dest.parent) == []
    [headers] = origin.requests
    assert headers["accept-encoding"] == "identity"
    assert not {"authorization", "x-api-key", "x-api-id", "cookie", "range"} & headers.keys()


async def test_dropped_connection_resumes_with_range(http, origin, tmp_path: Path) -> None:
    origin.faults = ["drop:10000"]
    result = await _get(http, origin, tmp_path)
    assert result.sha256 == hashlib.sha256(origin.body).hexdigest()
    starts = origin.range_starts()
    assert len(starts) == 2 and starts[0] is None
    assert 0 < starts[1] <= 10000  # resumed where the kept bytes end, not from zero
    assert origin.requests[1]["if-range"] == origin.etag
    assert _leftovers(tmp_path / "out") == []


async def test_progressing_transfers_keep_resuming_beyond_max_attempts(http, origin, tmp_path: Path) -> None:
    origin.faults = ["drop:8192"] * 4
    result = await _get(http, origin, tmp_path, max_attempts=2)
    assert result.sha256 == hashlib.sha256(origin.body).hexdigest()
    starts = origin.range_starts()
    assert len(starts) == 5
    assert starts[0] is None and starts[1:] == sorted(set(starts[1:]))  # each attempt further along


async def test_without_range_support_it_starts_over(http, origin, tmp_path: Path) -> None:
    origin.ranges = False
    origin.faults = ["drop:10000"]
    result = await _get(http, origin, tmp_path)
    assert result.sha256 == hashlib.sha256(origin.body).hexdigest()
    assert (tmp_path / "out" / "clip.mp4").read_bytes() == origin.body
    assert len(origin.requests) == 2  # asked for a range, got the whole file, used it


@pytest.mark.parametrize("answer", ["badrange:10", "badrange:-10", "unsatisfiable"])
async def test_a_resume_from_the_wrong_offset_starts_over(http, origin, tmp_path: Path, answer: str) -> None:
    origin.faults = ["drop:10000", answer]
    result = await _get(http, origin, tmp_path)
    assert result.sha256 == hashlib.sha256(origin.body).hexdigest()
    starts = origin.range_starts()
    assert len(starts) == 3 and starts[0] is None and starts[1] > 0 and starts[2] is None


async def test_a_file_that_changed_between_attempts_is_fetched_whole(http, origin, tmp_path: Path) -> None:
    origin.body = b"A" * 30000
    origin.next_version = (b"B" * 30000, '"v2"')  # and the origin ignores If-Range
    origin.faults = ["drop:10000"]
    result = await _get(http, origin, tmp_path, verify=None)
    assert (tmp_path / "out" / "clip.mp4").read_bytes() == b"B" * 30000
    assert result.sha256 == hashlib.sha256(b"B" * 30000).hexdigest()
    assert origin.range_starts()[2] is None


async def test_body_without_length_is_accepted_when_playable(http, origin, tmp_path: Path) -> None:
    origin.faults = ["chunked"]
    result = await _get(http, origin, tmp_path)
    assert result.size == len(origin.body) and len(origin.requests) == 1


async def test_server_errors_are_retried(http, origin, tmp_path: Path) -> None:
    origin.faults = [503, 429]
    result = await _get(http, origin, tmp_path)
    assert result.sha256 == hashlib.sha256(origin.body).hexdigest()
    assert len(origin.requests) == 3


async def test_persistent_failures_give_up_after_max_attempts(http, origin, tmp_path: Path) -> None:
    origin.faults = [503] * 10
    with pytest.raises(TransientError, match="after 3 attempts"):
        await _get(http, origin, tmp_path, max_attempts=3)
    assert len(origin.requests) == 3
    assert not (tmp_path / "out" / "clip.mp4").exists()
    assert _leftovers(tmp_path / "out") == []


async def test_connection_drops_without_progress_give_up(http, origin, tmp_path: Path) -> None:
    origin.ranges = False
    origin.faults = ["drop:5000"] * 10
    with pytest.raises(TransientError):
        await _get(http, origin, tmp_path, max_attempts=3)
    assert len(origin.requests) == 4  # the first drop made progress; three without followed
    assert _leftovers(tmp_path / "out") == []


@pytest.mark.parametrize("status", [401, 403, 404, 410, 400])
async def test_expired_or_gone_urls_ask_for_a_fresh_url(http, origin, tmp_path: Path, status: int) -> None:
    origin.faults = [status]
    with pytest.raises(ResultExpiredError) as caught:
        await download(http, origin.url + "?X-Amz-Signature=sig-secret", tmp_path / "clip.mp4", retry_delay=0)
    assert caught.value.status == status
    assert "sig-secret" not in str(caught.value)
    assert len(origin.requests) == 1  # never retried: the same URL will not come back
    assert list(tmp_path.iterdir()) == []


async def test_other_client_errors_are_permanent(http, origin, tmp_path: Path) -> None:
    origin.faults = [405]
    with pytest.raises(PermanentError) as caught:
        await _get(http, origin, tmp_path)
    assert not isinstance(caught.value, ResultExpiredError)
    assert caught.value.status == 405


@pytest.mark.parametrize("fault", ["junk", "short:20000"])
async def test_complete_but_corrupt_video_is_removed(http, origin, tmp_path: Path, fault: str) -> None:
    old = tmp_path / "out" / "clip.mp4"
    old.parent.mkdir()
    old.write_bytes(b"previous output")
    origin.faults = [fault]
    with pytest.raises(CorruptDownloadError, match="not a playable video"):
        await _get(http, origin, tmp_path)
    assert old.read_bytes() == b"previous output"  # never replaced by the bad bytes
    assert _leftovers(tmp_path / "out") == []


async def test_no_verify_keeps_any_complete_bytes(http, origin, tmp_path: Path) -> None:
    origin.body = b"not a video at all" * 1000
    result = await _get(http, origin, tmp_path, verify=None)
    assert result.sha256 == hashlib.sha256(origin.body).hexdigest()
    assert result.size == 18000


async def test_cancelled_download_leaves_no_temp_file(http, origin, tmp_path: Path) -> None:
    origin.faults = ["stall:6000"]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_get, http, origin, tmp_path)
        await origin.stalled.wait()
        nursery.cancel_scope.cancel()
    assert _leftovers(tmp_path / "out") == []
    assert not (tmp_path / "out" / "clip.mp4").exists()


async def test_failure_after_the_last_byte_needs_no_second_request(mp4_bytes: bytes, tmp_path: Path) -> None:
    requests = []

    async def body_then_reset():
        yield mp4_bytes
        raise httpx.ReadError("connection reset after the last byte")

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, headers={"content-length": str(len(mp4_bytes))}, content=body_then_reset())

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        result = await download(client, "http://cdn.invalid/v.mp4", tmp_path / "v.mp4", retry_delay=0)
    assert result.sha256 == hashlib.sha256(mp4_bytes).hexdigest()
    assert len(requests) == 1
