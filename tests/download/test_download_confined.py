"""Results land inside the output folder or nowhere: no symlink below it is followed; write errors name the path."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
import pytest

from lipbatch import confined
from lipbatch.confined import OutputWriteError
from lipbatch.download import download
from lipbatch.engine.outputs import copy_file

pytestmark = pytest.mark.anyio


@pytest.fixture
async def http() -> httpx.AsyncClient:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """The output folder and a folder outside it."""
    root, outside = tmp_path / "out", tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    return root, outside


def _all_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


async def test_a_symlinked_subfolder_is_refused_and_nothing_lands_outside(http, origin, layout) -> None:
    root, outside = layout
    (root / "de").mkdir()
    (root / "de" / "runway").symlink_to(outside, target_is_directory=True)
    with pytest.raises(OutputWriteError, match=r"de/runway is a symbolic link.*replace it with a real folder"):
        await download(http, origin.url, root / "de" / "runway" / "clip.mp4", root=root, retry_delay=0)
    assert _all_files(outside) == []
    assert origin.requests == []  # refused before anything was fetched


async def test_a_symlink_higher_up_is_refused_too(http, origin, layout) -> None:
    root, outside = layout
    (outside / "deep").mkdir()
    (root / "de").symlink_to(outside, target_is_directory=True)
    with pytest.raises(OutputWriteError, match=r"/de is a symbolic link"):
        await download(http, origin.url, root / "de" / "deep" / "clip.mp4", root=root, retry_delay=0)
    assert _all_files(outside) == ["deep"]


async def test_the_output_folder_itself_may_be_a_symlink(http, origin, layout, tmp_path: Path) -> None:
    root, outside = layout
    linked = tmp_path / "linked-out"
    linked.symlink_to(outside, target_is_directory=True)
    got = await download(http, origin.url, linked / "de" / "clip.mp4", root=linked, retry_delay=0)
    assert (outside / "de" / "clip.mp4").read_bytes() == origin.body
    assert got.sha256 == hashlib.sha256(origin.body).hexdigest()


async def test_a_symlink_at_the_destination_is_replaced_not_followed(http, origin, layout) -> None:
    root, outside = layout
    precious = outside / "precious.mp4"
    precious.write_bytes(b"someone else's file")
    (root / "clip.mp4").symlink_to(precious)
    await download(http, origin.url, root / "clip.mp4", root=root, retry_delay=0)
    assert precious.read_bytes() == b"someone else's file"
    assert not (root / "clip.mp4").is_symlink() and (root / "clip.mp4").read_bytes() == origin.body


async def test_a_file_where_a_folder_should_be_is_a_message(http, origin, layout) -> None:
    root, _ = layout
    (root / "de").write_bytes(b"not a folder")
    with pytest.raises(OutputWriteError, match=r"/de is a file, not a folder; move it away"):
        await download(http, origin.url, root / "de" / "clip.mp4", root=root, retry_delay=0)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (a device that is always full)")
async def test_a_full_disk_is_an_output_write_error_and_leaves_no_temp_file(http, origin, layout, monkeypatch) -> None:
    root, _ = layout
    real = confined.create_file
    temp_names = []

    def on_a_full_disk(folder, name):
        os.close(real(folder, name))  # the temp file exists, as it would; its bytes go to a full device
        temp_names.append(name)
        return os.open("/dev/full", os.O_WRONLY)

    monkeypatch.setattr(confined, "create_file", on_a_full_disk)
    with pytest.raises(OutputWriteError, match=r"cannot write .*clip\.mp4: .*no space left on the device"):
        await download(http, origin.url, root / "clip.mp4", root=root, retry_delay=0)
    assert temp_names and _all_files(root) == []
    assert len(origin.requests) == 1  # a local error is not retried against the server


def test_copy_file_never_writes_through_a_symlinked_subfolder(layout, tmp_path: Path) -> None:
    root, outside = layout
    source = tmp_path / "source.mp4"
    source.write_bytes(b"video bytes")
    copy_file(source, root / "en" / "a.mp4", root=root)
    assert (root / "en" / "a.mp4").read_bytes() == b"video bytes"
    (root / "fr").symlink_to(outside, target_is_directory=True)
    with pytest.raises(OutputWriteError, match="is a symbolic link"):
        copy_file(source, root / "fr" / "a.mp4", root=root)
    with pytest.raises(OutputWriteError, match="outside the output folder"):
        copy_file(source, outside / "a.mp4", root=root)
    assert _all_files(outside) == []
    assert _all_files(root) == ["en", "en/a.mp4", "fr"]


async def test_a_folder_this_run_wrote_into_gets_its_next_temp_file_in_the_write_hop(http, origin, layout) -> None:
    """The first result for a folder is refused before fetching if the folder cannot take it; later ones
    create their temp file (after ``prepare``) in the hop of their first write, one hop less each."""
    root, _ = layout
    known: set[Path] = set()
    fetched_before_prepare: list[int] = []

    def prepare() -> None:
        fetched_before_prepare.append(len(origin.requests))

    for name in ("a.mp4", "b.mp4", "c.mp4"):
        await download(http, origin.url, root / "de" / name, root=root, retry_delay=0, prepare=prepare,
                       known_folders=known, verify=None)
    assert fetched_before_prepare == [0, 2, 3]  # the first before its request, the others after theirs
    assert known == {root / "de"}
    assert _all_files(root) == ["de", "de/a.mp4", "de/b.mp4", "de/c.mp4"]


async def test_a_known_folder_turned_symlink_is_still_refused_and_nothing_lands_outside(http, origin, layout) -> None:
    root, outside = layout
    known: set[Path] = set()
    await download(http, origin.url, root / "de" / "a.mp4", root=root, retry_delay=0, known_folders=known,
                   verify=None)
    (root / "de" / "a.mp4").rename(root / "a.mp4")
    (root / "de").rmdir()
    (root / "de").symlink_to(outside, target_is_directory=True)
    with pytest.raises(OutputWriteError, match=r"/de is a symbolic link"):
        await download(http, origin.url, root / "de" / "b.mp4", root=root, retry_delay=0, known_folders=known,
                       verify=None)
    assert _all_files(outside) == []
    assert len(origin.requests) == 2  # this one was fetched (into memory) before its folder was opened
