"""Binary deltas (issue 24, item 2): a changed binary, or a text file over
``max_diff_bytes``, is stored as a delta in librsync's format against the version
before it, so that ``rdiff patch`` rebuilds it by hand; a full copy when the delta
would not be much smaller.  Every version restores byte for byte."""

from __future__ import annotations

import io
import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest
from support import Backup, at, history_of, on_disk, rebuilt, whole

from pipeline import bindelta

DATA = Path(__file__).parent / "data"


def _delta(tmp_path: Path, old: bytes, new: bytes, limit: int | None = None) -> bytes | None:
    (tmp_path / "old").write_bytes(old)
    (tmp_path / "new").write_bytes(new)
    fo, fn = os.open(tmp_path / "old", os.O_RDONLY), os.open(tmp_path / "new", os.O_RDONLY)
    try:
        out = io.BytesIO()
        size, basis = bindelta.make(lambda n, at: os.pread(fo, n, at), len(old), fn, out,
                                    limit or len(new) // 2 + 64)
        import hashlib
        assert basis == hashlib.sha256(old).hexdigest()
        assert bindelta.make_bytes(old, new, limit or len(new) // 2 + 64) == (
            None if size is None else out.getvalue())
        return None if size is None else out.getvalue()
    finally:
        os.close(fo)
        os.close(fn)


def _rdiff() -> str:
    found = shutil.which("rdiff")
    if found is None:       # .ci/run installs it; our own applier is tested without it
        pytest.skip("rdiff (librsync's tool, Debian package rdiff) is not installed")
    return found


R = random.Random(24)
OLD = R.randbytes(3 << 20)
EDITS = {
    "rewritten in place": OLD[:1 << 20] + R.randbytes(200_000) + OLD[(1 << 20) + 200_000:],
    "bytes inserted": OLD[:12345] + b"inserted" * 1000 + OLD[12345:],
    "bytes deleted": OLD[:500_000] + OLD[500_777:],
    "appended": OLD + R.randbytes(10_000),
    "truncated": OLD[:-4097],
    "moved block": OLD[1 << 20:] + OLD[:1 << 20],
}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_a_delta_holds_what_changed_and_rdiff_applies_it(tmp_path: Path, edit: str) -> None:
    new = EDITS[edit]
    delta = _delta(tmp_path, OLD, new)
    assert delta is not None
    assert len(delta) < len(new) - len(OLD) + 270_000 if edit == "rewritten in place" \
        else len(delta) < 100_000, len(delta)
    assert bindelta.apply(OLD, delta) == new
    (tmp_path / "d.rdiff").write_bytes(delta)
    subprocess.run([_rdiff(), "patch", str(tmp_path / "old"), str(tmp_path / "d.rdiff"),
                    str(tmp_path / "rebuilt")], check=True)
    assert (tmp_path / "rebuilt").read_bytes() == new


def test_unrelated_bytes_give_no_delta(tmp_path: Path) -> None:
    assert _delta(tmp_path, OLD, R.randbytes(len(OLD))) is None
    assert _delta(tmp_path, b"", OLD) is None


def test_what_librsync_wrote_applies_here() -> None:
    """The other direction: a delta made by rdiff itself (kept in tests/data) is read
    by our applier, so our format is librsync's and not merely our own."""
    rng = random.Random(7)
    old = rng.randbytes(20000)
    new = old[:5000] + b"inserted by hand" + old[5000:15000] + rng.randbytes(300) \
        + old[15300:] + b"tail"
    delta = (DATA / "rdiff-made-by-librsync.rdiff").read_bytes()
    assert bindelta.apply(old, delta) == new
    with pytest.raises(bindelta.DeltaError):
        bindelta.apply(old[:100], delta)                # copies past its basis
    with pytest.raises(bindelta.DeltaError):
        bindelta.apply(old, delta[:-1])                 # cut short
    with pytest.raises(bindelta.DeltaError):
        bindelta.apply(old, b"BAD!" + delta[4:])


def test_the_block_index_is_bounded_whatever_the_size() -> None:
    assert bindelta.block_size(50 << 20) == 4096
    for size in (1 << 30, 4 << 30, 1 << 40):
        assert size // bindelta.block_size(size) <= bindelta.MAX_BLOCKS


def _rewrite(path: Path, at_offset: int, length: int, seed: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(at_offset)
        fh.write(random.Random(seed).randbytes(length))


def test_a_big_binary_rewritten_in_place_twice_costs_what_changed(backup: Backup,
                                                                   tmp_path: Path) -> None:
    img = backup.src / "disk.img"
    img.write_bytes(random.Random(1).randbytes(8 << 20))
    at(backup, "2026-12-01T10:00:00", "versioned")
    v1 = img.read_bytes()
    first = on_disk(backup.versions)
    _rewrite(img, 2 << 20, 256 << 10, 2)
    at(backup, "2026-12-01T11:00:00", "versioned")
    v2 = img.read_bytes()
    _rewrite(img, 5 << 20, 256 << 10, 3)
    at(backup, "2026-12-01T12:00:00", "versioned")
    v3 = img.read_bytes()
    # each change adds its delta, nothing more (the version before is read through
    # the chain of deltas, never kept whole beside it)
    assert on_disk(backup.versions) - first < 600 << 10, on_disk(backup.versions) - first
    rows = history_of(backup, "disk.img")
    assert [r.kind for r in rows] == ["baseline", "delta", "delta"]
    assert rebuilt(backup, "disk.img") == [v1, v2, v3]
    runs = [__import__("json").loads(line)["run_id"] for line in backup.runs()]
    for run_id, want in zip(runs, [v1, v2, v3], strict=True):
        into = tmp_path / run_id
        code, out = backup.run("restore", str(img), "--at", run_id, "--to", str(into))
        assert code == 0, out
        assert (into / "disk.img").read_bytes() == want
    code, out = backup.run("verify", "--deep")
    assert code == 0, out
    # by hand, as the README says: rdiff patch, baseline first
    work = tmp_path / "hand"
    shutil.copy(backup.versions / os.fsdecode(rows[0].store) / os.fsdecode(rows[0].object),
                work)
    for row, want in zip(rows[1:], [v2, v3], strict=True):
        delta = backup.versions / os.fsdecode(row.store) / os.fsdecode(row.object)
        assert delta.name.endswith(".rdiff")
        subprocess.run([_rdiff(), "patch", str(work), str(delta), str(tmp_path / "next")],
                       check=True)
        os.replace(tmp_path / "next", work)
        assert work.read_bytes() == want
    out = backup.doit("history", str(img), check=True).stdout
    assert " delta " in out


def test_a_text_file_over_max_diff_bytes_is_a_delta(backup: Backup) -> None:
    backup.write_plan(versioned={"max_diff_bytes": "64KiB"})
    log = backup.src / "app.log"
    lines = [f"2026-12-01 line {i} something happened\n".encode() for i in range(20000)]
    log.write_bytes(b"".join(lines))
    at(backup, "2026-12-01T10:00:00", "versioned")
    lines[5000] = b"changed\n"
    log.write_bytes(b"".join(lines) + b"one more line\n")
    at(backup, "2026-12-01T11:00:00", "versioned")
    rows = history_of(backup, "app.log")
    assert [r.kind for r in rows] == ["baseline", "delta"]
    obj = backup.versions / os.fsdecode(rows[1].store) / os.fsdecode(rows[1].object)
    assert obj.stat().st_size < 20_000
    assert rebuilt(backup, "app.log")[-1] == log.read_bytes()


def test_a_damaged_whole_copy_is_not_a_basis(backup: Backup) -> None:
    """A delta against a whole copy that no longer holds the version it names would
    rebuild the wrong bytes: the new version is kept whole instead."""
    img = backup.src / "a.bin"
    img.write_bytes(random.Random(4).randbytes(200_000))
    at(backup, "2026-12-01T10:00:00", "versioned")
    stored = whole(backup, "a.bin")
    data = bytearray(stored.read_bytes())
    data[100] ^= 1
    os.chmod(stored, 0o600)
    stored.write_bytes(bytes(data))                        # damaged on disk
    _rewrite(img, 1000, 100, 5)
    at(backup, "2026-12-01T11:00:00", "versioned")
    assert [r.kind for r in history_of(backup, "a.bin")] == ["baseline", "full"]
    assert whole(backup, "a.bin").read_bytes() == img.read_bytes()


def test_prune_rebases_deltas(backup: Backup, tmp_path: Path) -> None:
    img = backup.src / "a.bin"
    img.write_bytes(random.Random(6).randbytes(1 << 20))
    versions = []
    for hour, offset in enumerate((0, 100_000, 300_000, 700_000)):
        if hour:
            _rewrite(img, offset, 50_000, hour)
        at(backup, f"2026-12-01T1{hour}:00:00", "versioned")
        versions.append(img.read_bytes())
    assert [r.kind for r in history_of(backup, "a.bin")] == ["baseline"] + ["delta"] * 3
    before = on_disk(backup.versions)
    code, out = backup.run("prune", "--keep-last", "2")
    assert code == 0, out
    rows = history_of(backup, "a.bin")
    assert [r.kind for r in rows] == ["baseline", "delta"]
    assert rebuilt(backup, "a.bin") == versions[2:]
    assert on_disk(backup.versions) <= before
    code, out = backup.run("verify", "--deep")
    assert code == 0, out


def _measured(backup: Backup, *args: str) -> tuple[subprocess.CompletedProcess, int]:
    """A snapback command line and the peak of its own memory in KiB (VmHWM:
    ru_maxrss would carry the forking test process's peak across exec)."""
    import sys
    # the snapback command (pipeline.__main__.command) but for its ending: no garbage
    # collector, and the peak said before the process ends
    measured = ("import gc, sys; gc.disable(); from pipeline.__main__ import main; "
                "code = main(sys.argv[1:]); print('MAXRSS', "
                "[line.split()[1] for line in open('/proc/self/status') "
                "if line.startswith('VmHWM')][0], file=sys.stderr); sys.exit(code)")
    result = subprocess.run([sys.executable, "-c", measured, *args, f"config={backup.plan}"],
                            capture_output=True, text=True, cwd=backup.base)
    return result, int(result.stderr.split("MAXRSS")[1].split()[0])


def test_an_old_version_of_a_big_file_restores_in_bounded_memory(backup: Backup,
                                                                 tmp_path: Path) -> None:
    """Restoring a version that is a chain of deltas, and checking every version,
    read it through the stored files: a 256 MB (sparse) file never sits in memory
    whole."""
    import json
    img = backup.src / "vm.img"
    with open(img, "wb") as fh:
        fh.truncate(256 << 20)
    _rewrite(img, 100 << 20, 1 << 20, 1)
    at(backup, "2026-12-01T10:00:00", "versioned")
    _rewrite(img, 150 << 20, 1 << 20, 2)
    at(backup, "2026-12-01T11:00:00", "versioned")
    want = img.read_bytes()
    _rewrite(img, 200 << 20, 1 << 20, 3)
    at(backup, "2026-12-01T12:00:00", "versioned")
    assert [r.kind for r in history_of(backup, "vm.img")] == ["baseline", "delta", "delta"]
    run_id = json.loads(backup.runs()[1])["run_id"]
    result, peak = _measured(backup, "restore", str(img), "--at", run_id,
                             "--to", str(tmp_path / "r"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "r" / "vm.img").read_bytes() == want
    assert peak < 160 << 10, f"restore peaked at {peak // 1024} MiB"
    assert os.stat(tmp_path / "r" / "vm.img").st_blocks * 512 < 16 << 20      # holes kept
    assert not list((tmp_path / "r").glob(".~snapback-*"))
    result, peak = _measured(backup, "verify", "--deep")
    assert result.returncode == 0, result.stdout + result.stderr
    assert peak < 160 << 10, f"verify --deep peaked at {peak // 1024} MiB"


def test_a_chain_reads_as_the_version_it_makes(tmp_path: Path) -> None:
    """Chain: a whole file with deltas on top reads (at any offset, any length) as
    the version they make, without writing anything."""
    rng = random.Random(11)
    versions = [rng.randbytes(300_000)]
    for step in range(5):
        v = bytearray(versions[-1])
        at = rng.randrange(len(v))
        v[at:at + 500] = rng.randbytes(700 + step)          # grows, shifts
        versions.append(bytes(v))
    (tmp_path / "v0").write_bytes(versions[0])
    fds = [os.open(tmp_path / "v0", os.O_RDONLY)]
    chain = bindelta.Chain(fds[0])
    for n in range(1, len(versions)):
        delta = bindelta.make_bytes(versions[n - 1], versions[n], len(versions[n]))
        assert delta is not None
        (tmp_path / f"d{n}").write_bytes(delta)
        fds.append(os.open(tmp_path / f"d{n}", os.O_RDONLY))
        chain.apply(fds[-1])
        assert chain.size == len(versions[n])
        assert chain.read(chain.size, 0) == versions[n]
        for _ in range(20):
            off, length = rng.randrange(chain.size), rng.randrange(70_000)
            assert chain.read(length, off) == versions[n][off:off + length]
    assert chain.read(10, chain.size + 5) == b""
    for fd in fds:
        os.close(fd)


def test_a_damaged_delta_is_not_a_basis(backup: Backup) -> None:
    """A delta in the chain that no longer makes the version it names: the next
    version is stored whole, never as a delta on wrong bytes."""
    img = backup.src / "a.bin"
    img.write_bytes(random.Random(4).randbytes(200_000))
    for hour in range(3):
        if hour:
            _rewrite(img, 1000 * hour, 100, hour)
        at(backup, f"2026-12-01T1{hour}:00:00", "versioned")
    rows = history_of(backup, "a.bin")
    assert [r.kind for r in rows] == ["baseline", "delta", "delta"]
    delta = backup.versions / os.fsdecode(rows[1].store) / os.fsdecode(rows[1].object)
    data = bytearray(delta.read_bytes())
    data[-5] ^= 1                                          # a byte flipped
    os.chmod(delta, 0o600)
    delta.write_bytes(bytes(data))
    _rewrite(img, 5000, 100, 9)
    at(backup, "2026-12-01T13:00:00", "versioned")
    assert [r.kind for r in history_of(backup, "a.bin")][-1] == "full"
    assert whole(backup, "a.bin").read_bytes() == img.read_bytes()
    code, out = backup.run("verify", "--deep")
    assert code == 1 and "unrebuildable" in out, out


def test_a_whole_copy_that_is_its_versions_only_good_record_is_kept(backup: Backup) -> None:
    """A damaged delta before the newest version: the newest still restores from its
    whole copy, and the next change does not remove that copy (adversary of issue 24)."""
    from pipeline.versioned import COPY_AFTER
    img = backup.src / "a.bin"
    img.write_bytes(random.Random(4).randbytes(100_000))
    backup.run("versioned")
    for n in range(1, COPY_AFTER + 1):
        _rewrite(img, 1000 * n, 100, n)
        code, out = backup.run("versioned")
        assert code == 0, out
    rows = history_of(backup, "a.bin")
    assert rows[-1].kind == "delta" and rows[-1].copy is not None
    newest = img.read_bytes()
    delta = backup.versions / os.fsdecode(rows[-2].store) / os.fsdecode(rows[-2].object)
    os.chmod(delta, 0o600)
    delta.write_bytes(delta.read_bytes()[:-10])              # damaged, before the newest
    _rewrite(img, 50_000, 100, 99)
    code, out = backup.run("versioned")
    assert code == 0, out
    rows = history_of(backup, "a.bin")
    assert rows[-2].copy is not None                          # kept: its only good record
    assert rebuilt_one(backup, rows, rows[-2]) == newest
    assert whole(backup, "a.bin").read_bytes() == img.read_bytes()


def rebuilt_one(backup: Backup, rows: list, row) -> bytes:  # type: ignore[no-untyped-def]
    from pipeline.rebuild import rebuild
    return rebuild(backup.versions, rows, row)


def test_a_prune_never_grows_the_backup(backup: Backup) -> None:
    """X's baseline is shared with its copy Y (one inode): rebasing X would write a
    new baseline while the old one stays, as Y's.  The prune keeps X as it is
    (adversary of issue 24: 16.5 -> 20.6 MB, reported as 0 B freed)."""
    x = backup.src / "X.bin"
    x.write_bytes(random.Random(8).randbytes(1 << 20))
    shutil.copy(x, backup.src / "Y.bin")
    for n in range(4):
        if n:
            _rewrite(x, 100_000 * n, 100, n)
        code, out = backup.run("versioned")
        assert code == 0, out
    before = on_disk(backup.dest)
    code, out = backup.run("prune", "--keep-last", "2")
    assert code == 0, out
    assert on_disk(backup.dest) <= before, (before, on_disk(backup.dest), out)
    assert rebuilt(backup, "X.bin")[-1] == x.read_bytes()
