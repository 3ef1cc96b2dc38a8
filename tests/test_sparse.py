"""Sparse files stay sparse: in the mirror, in the versioned history (stored object
and current copy), when restored from either, and after a prune rewrites the
baseline.  Real sparse files (ftruncate, then a few writes), real doit runs."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from support import Backup

MB = 1 << 20


def make_sparse(path: Path, size: int, regions: list[tuple[int, bytes]]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, size)
        for offset, data in regions:
            os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


def allocated(path: Path) -> int:
    return os.stat(path, follow_symlinks=False).st_blocks * 512


def sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(MB):
            h.update(chunk)
    return h.hexdigest()


@pytest.fixture(autouse=True)
def holes_supported(tmp_path: Path) -> None:
    """The test folder's filesystem must keep holes and answer SEEK_DATA."""
    probe = tmp_path / "hole-probe"
    make_sparse(probe, 64 * MB, [(32 * MB, b"x")])
    fd = os.open(probe, os.O_RDONLY)
    try:
        data = os.lseek(fd, 0, os.SEEK_DATA)
    except (OSError, AttributeError) as exc:
        pytest.skip(f"{tmp_path} does not answer SEEK_DATA ({exc}): cannot test holes")
    finally:
        os.close(fd)
    used = allocated(probe)
    probe.unlink()
    if used >= MB or data == 0:
        pytest.skip(f"{tmp_path}'s filesystem does not keep holes "
                    f"(a 64 MB file with one byte took {used} bytes)")


# name -> (size, data regions); each is far smaller on disk than its size
FILES = {
    # 100 MB with two small data regions
    "disk.img": (100 * MB, [(4096 * 3, os.urandom(20_000)), (70 * MB, os.urandom(50_000))]),
    # all hole
    "empty.img": (40 * MB, []),
    # data, then a hole up to the end
    "tail.img": (30 * MB, [(0, os.urandom(8192))]),
    # a hole, then data up to the last byte
    "head.img": (30 * MB, [(30 * MB - 5000, os.urandom(5000))]),
}
SMALL = MB                       # what "far fewer blocks than the size" means here


def make_files(folder: Path) -> dict[str, str]:
    for name, (size, regions) in FILES.items():
        make_sparse(folder / name, size, regions)
        assert allocated(folder / name) < SMALL, "the source itself is not sparse"
    return {name: sha(folder / name) for name in FILES}


def assert_sparse_copies(folder: Path, sums: dict[str, str], where: str) -> None:
    for name, (size, _regions) in FILES.items():
        path = folder / name
        assert path.stat().st_size == size, f"{where}: {name} has the wrong size"
        assert sha(path) == sums[name], f"{where}: {name} has other bytes"
        assert allocated(path) < SMALL, \
            f"{where}: {name} takes {allocated(path)} bytes on disk for a {size}-byte sparse file"


def test_mirror_history_and_restores_keep_holes(backup: Backup, tmp_path: Path) -> None:
    sums = make_files(backup.src)
    result = backup.doit("all", check=True)
    assert result.returncode == 0

    assert_sparse_copies(backup.mirror, sums, "mirror")
    for name in FILES:                          # the current copy and the baseline
        hist = backup.versions / name
        stem, ext = name.rsplit(".", 1)
        baselines = list(hist.glob(f"{stem}-baseline-*.{ext}"))
        assert len(baselines) == 1, sorted(p.name for p in hist.iterdir())
        for stored in baselines:
            assert sha(stored) == sums[name], stored
            assert allocated(stored) < SMALL, f"{stored} takes {allocated(stored)} bytes"
    # the catalog's checksum is over the full logical bytes, holes as zeros
    recorded = {r.name.decode(): r.sha256 for r in backup.catalog() if r.entry == "file"}
    assert recorded == sums

    out = tmp_path / "from-history"
    restored = backup.doit("restore", str(backup.src), "--to", str(out))
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert_sparse_copies(out, sums, "restored from the history")

    out = tmp_path / "from-mirror"
    restored = backup.doit("restore", str(backup.src), "--from", "snapshot", "--to", str(out))
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert_sparse_copies(out, sums, "restored from the mirror")

    assert backup.doit("verify", "--deep").returncode == 0


def test_a_changed_sparse_file_and_a_prune_keep_holes(backup: Backup, tmp_path: Path) -> None:
    """A second version of a binary sparse file is a delta, small; pruning the first
    makes the second the new baseline, rewritten from memory: still sparse."""
    image = backup.src / "vm.img"
    make_sparse(image, 100 * MB, [(10 * MB, b"one" * 1000)])
    backup.doit("versioned", env={"SNAPBACK_NOW": "2026-10-01T10:00:00"}, check=True)
    make_sparse(image, 100 * MB, [(10 * MB, b"two" * 1000), (90 * MB, b"\x00\x01" * 3000)])
    want = sha(image)
    backup.doit("versioned", env={"SNAPBACK_NOW": "2026-10-02T10:00:00"}, check=True)
    stored = [p for p in (backup.versions / "vm.img").rglob("*") if p.is_file()]
    assert len(stored) == 2, stored                   # baseline, delta
    assert sum(p.suffix == ".rdiff" for p in stored) == 1, stored
    for path in stored:
        assert allocated(path) < SMALL, f"{path} takes {allocated(path)} bytes"

    result = backup.doit("prune", "--keep-last", "1",
                         env={"SNAPBACK_NOW": "2026-10-03T10:00:00"})
    assert result.returncode == 0, result.stdout + result.stderr
    baseline = list((backup.versions / "vm.img").glob("vm-baseline-*.img"))
    assert len(baseline) == 1 and sha(baseline[0]) == want
    assert allocated(baseline[0]) < SMALL, f"{baseline[0]} takes {allocated(baseline[0])} bytes"
    assert backup.doit("verify", "--deep").returncode == 0


def preallocate_past_end(path: Path, length: int) -> None:
    """Blocks reserved past the end of the file (fallocate FALLOC_FL_KEEP_SIZE, as
    VM images, torrent clients and XFS's speculative preallocation leave them): the
    file's st_blocks then counts more than its size, though it has holes."""
    import ctypes
    import ctypes.util
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    fd = os.open(path, os.O_WRONLY)
    try:
        if libc.fallocate(fd, 1, path.stat().st_size, length) != 0:   # 1: KEEP_SIZE
            pytest.skip(f"fallocate KEEP_SIZE: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(fd)


def test_holes_are_kept_when_blocks_are_reserved_past_the_end(backup: Backup) -> None:
    """st_blocks counts what is allocated, not what is data: a sparse file with blocks
    reserved past its end has as many blocks as bytes, and its holes are still holes
    (the copy must ask the filesystem, not trust st_blocks)."""
    image = backup.src / "vm.img"
    make_sparse(image, 64 * MB, [(0, os.urandom(5000)), (40 * MB, os.urandom(5000))])
    preallocate_past_end(image, 80 * MB)
    assert allocated(image) >= image.stat().st_size, "no blocks reserved past the end"
    want = sha(image)
    backup.doit("all", check=True)
    stem = list((backup.versions / "vm.img").glob("vm-baseline-*.img"))
    assert len(stem) == 1
    for copy in (backup.mirror / "vm.img", stem[0]):
        assert sha(copy) == want, copy
        assert allocated(copy) < SMALL, f"{copy} takes {allocated(copy)} bytes"
