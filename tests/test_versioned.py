"""doit versioned: baselines, standard diffs, full copies, deletions, crashes."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import (
    Backup,
    aged,
    digest,
    gnu_patch_chain,
    history_of,
    lines,
    make_tree,
    rebuilt,
    tree,
    whole,
)

from pipeline.versioned import baseline_name


def test_layout_baseline_diff_and_full_copies(backup: Backup) -> None:
    backup.write_plan(versioned={"max_diff_bytes": 1000})
    make_tree(backup.src, {"docs": {"notes.md": "one\n", "logo.png": b"\x89PNG\0\x01",
                                    "big.txt": "x\n" * 600}})
    result = backup.doit("versioned", check=True)
    assert lines(result.stdout, "new") == ["src/docs/big.txt", "src/docs/logo.png",
                                           "src/docs/notes.md"]
    hist = backup.versions / "docs" / "notes.md"
    day = time.strftime("%Y-%m-%d")
    assert whole(backup, "docs/notes.md") == hist / f"notes-baseline-{day}.md"
    assert (hist / f"notes-baseline-{day}.md").read_text() == "one\n"
    (backup.src / "docs" / "notes.md").write_text("one\ntwo\n")
    (backup.src / "docs" / "logo.png").write_bytes(b"\x89PNG\0\x02")
    (backup.src / "docs" / "big.txt").write_text("y\n" * 600)
    result = backup.doit("versioned", check=True)
    assert lines(result.stdout, "updated") == ["src/docs/big.txt", "src/docs/logo.png",
                                               "src/docs/notes.md"]
    diffs = list((hist / "notes.md_diffs").iterdir())
    assert len(diffs) == 1 and diffs[0].name.startswith("notes.md_v") and diffs[0].suffix == ".diff"
    assert "+two" in diffs[0].read_text()
    # a short chain of diffs keeps no whole copy: the newest version is rebuilt
    assert not (hist / "notes.md_versions").exists()
    assert len(list((backup.versions / "docs" / "logo.png" / "logo.png_versions").iterdir())) == 1
    assert len(list((backup.versions / "docs" / "big.txt" / "big.txt_versions").iterdir())) == 1
    assert [r.kind for r in history_of(backup, "docs/big.txt")] == ["baseline", "full"]
    assert rebuilt(backup, "docs/notes.md") == [b"one\n", b"one\ntwo\n"]


def test_catalog_records_source_size_and_sha256(backup: Backup) -> None:
    make_tree(backup.src, {"a.txt": "hello\n"})
    backup.doit("versioned", "--note", "first", check=True)
    (row,) = history_of(backup, "a.txt")
    assert (row.kind, row.size, row.note) == ("baseline", 6, "first")
    assert row.sha256 == digest(backup.src / "a.txt")
    assert row.mtime_ns == os.stat(backup.src / "a.txt").st_mtime_ns


def test_no_change_rerun_and_touch_write_nothing(backup: Backup) -> None:
    make_tree(backup.src, {"a.txt": "a\n", "d": {"b.txt": "b\n"}})
    aged(backup.src)
    backup.doit("versioned", check=True)
    before = tree(backup.dest, with_mtime=True)
    result = backup.doit("versioned", check=True)
    assert result.stdout.count("\n") == 1
    assert tree(backup.dest, with_mtime=True) == before
    later = time.time_ns() + 3_000_000_000
    os.utime(backup.src / "a.txt", ns=(later, later))
    result = backup.doit("versioned", check=True)
    assert lines(result.stdout, "updated") == []
    # a touch is a version of its own without an object: each run restores its mtime
    assert [r.kind for r in history_of(backup, "a.txt")] == ["baseline", "meta"]
    assert not (backup.versions / "a.txt" / "a.txt_diffs").exists()
    assert not (backup.versions / "a.txt" / "a.txt_versions").exists()


def test_deleted_file_keeps_history_and_comes_back_in_it(backup: Backup) -> None:
    make_tree(backup.src, {"a.txt": "v1\n"})
    backup.doit("versioned", check=True)
    (backup.src / "a.txt").write_text("v2\n")
    backup.doit("versioned", check=True)
    (backup.src / "a.txt").unlink()
    assert lines(backup.doit("versioned", check=True).stdout, "deleted") == ["src/a.txt"]
    assert rebuilt(backup, "a.txt")[-2:] == [b"v2\n", None]   # history kept
    (backup.src / "a.txt").write_text("v3\n")
    assert lines(backup.doit("versioned", check=True).stdout, "new") == ["src/a.txt"]
    kinds = [r.kind for r in history_of(backup, "a.txt")]
    assert kinds == ["baseline", "diff", "deleted", "diff"]              # one baseline only
    assert rebuilt(backup, "a.txt") == [b"v1\n", b"v2\n", None, b"v3\n"]
    names = [r.time for r in history_of(backup, "a.txt")]
    assert len(set(names)) == len(names)                                 # same second: distinct


def test_deleted_folder_records_every_file_below(backup: Backup) -> None:
    make_tree(backup.src, {"proj": {"a.txt": "a", "sub": {"b.txt": "b"}}, "keep.txt": "k"})
    backup.doit("versioned", check=True)
    for path in sorted(backup.src.joinpath("proj").rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    backup.src.joinpath("proj").rmdir()
    result = backup.doit("versioned", check=True)
    assert lines(result.stdout, "deleted") == ["src/proj/ (2 files)"]
    for rel in ("proj/a.txt", "proj/sub/b.txt"):
        assert history_of(backup, rel)[-1].kind == "deleted"
    assert history_of(backup, "keep.txt")[-1].kind == "baseline"


def test_path_changing_kind_keeps_both_histories(backup: Backup) -> None:
    make_tree(backup.src, {"notes": "a file\n"})
    backup.doit("versioned", check=True)
    (backup.src / "notes").unlink()
    make_tree(backup.src, {"notes": {"notes": "a file in a folder of the same name\n"}})
    backup.doit("versioned", check=True)
    (backup.src / "notes" / "notes").unlink()
    (backup.src / "notes").rmdir()
    (backup.src / "notes").write_text("a file again\n")
    backup.doit("versioned", check=True)
    assert rebuilt(backup, "notes") == [b"a file\n", None, b"a file again\n"]
    assert rebuilt(backup, "notes/notes") == [b"a file in a folder of the same name\n", None]


def test_gnu_patch_rebuilds_every_text_version(backup: Backup, tmp_path: Path) -> None:
    versions = [b"line 1\r\nline 2\r\n", b"line 1\r\nline two\r\nno newline", b"",
                b"caf\xe9\nlatin-1\n", b"mixed\r\nends\nhere\r", b"caf\xe9\nlatin-1\n"]
    for content in versions:
        (backup.src / "f.txt").write_bytes(content)
        assert backup.run("versioned")[0] == 0
    assert rebuilt(backup, "f.txt") == versions
    assert gnu_patch_chain(backup, "f.txt", tmp_path) == versions


def test_dry_run_changes_nothing(backup: Backup) -> None:
    make_tree(backup.src, {"a.txt": "a\n"})
    backup.doit("versioned", check=True)
    (backup.src / "a.txt").write_text("b\n")
    (backup.src / "new.txt").write_text("n\n")
    before = tree(backup.dest, with_mtime=True)
    result = backup.doit("versioned", "--dry-run", check=True)
    assert "(dry run) updated  src/a.txt" in result.stdout
    assert "(dry run) new      src/new.txt" in result.stdout
    assert tree(backup.dest, with_mtime=True) == before
    result = backup.doit("versioned", check=True)
    assert lines(result.stdout, "updated") == ["src/a.txt"]


def test_all_runs_both_modes_with_one_record(backup: Backup) -> None:
    make_tree(backup.src, {"a.txt": "a\n", ".git": {"HEAD": "ref\n"}})
    result = backup.doit("all", "--note", "both", check=True)
    assert "snapshot: 2 files, 2 new" in result.stdout
    assert "versioned: 1 file, 1 new" in result.stdout          # .git/ is not versioned
    assert (backup.mirror / ".git" / "HEAD").exists()
    assert not (backup.versions / ".git").exists()
    (record,) = [json.loads(l) for l in backup.runs()]
    assert record["mode"] == "all" and record["note"] == "both"
    assert record["modes"]["snapshot"]["new"] == 2 and record["modes"]["versioned"]["new"] == 1


# ---- any history, diffed and rebuilt, gives back the same bytes ----

LINE_ENDS = st.sampled_from([b"\n", b"\r\n", b"\r", b""])
TEXT_LINE = st.builds(lambda body, end: body + end,
                      st.binary(max_size=12).filter(lambda b: b"\0" not in b and b"\n" not in b),
                      LINE_ENDS)
TEXT = st.lists(TEXT_LINE, max_size=12).map(b"".join)
CONTENT = st.one_of(TEXT, TEXT, st.binary(max_size=64), st.just(b""), st.none())


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=st.lists(CONTENT, min_size=1, max_size=6))
def test_any_history_rebuilds_byte_for_byte(tmp_path_factory, steps) -> None:
    base = tmp_path_factory.mktemp("prop")
    b = Backup(base, base / "src", base / "dest", base / "backup.yaml")
    b.src.mkdir()
    b.write_plan()
    path = b.src / "f"
    expected: list[bytes | None] = []
    for content in steps:
        if content is None:
            if path.exists():
                path.unlink()
                expected.append(None)
        else:
            old = path.read_bytes() if path.exists() else None
            path.write_bytes(content)
            if old != content:
                expected.append(content)
        code, out = b.run("versioned")
        assert code == 0, out
    assert rebuilt(b, "f") == expected
    text_only = [e for e in expected if e is not None]
    if all(b"\0" not in e for e in text_only) and None not in expected and text_only:
        assert gnu_patch_chain(b, "f", base) == text_only


def test_baseline_names() -> None:
    assert baseline_name(b"report.md", "2026-11-24") == b"report-baseline-2026-11-24.md"
    assert baseline_name(b".bashrc", "2026-11-24") == b".bashrc-baseline-2026-11-24"
    assert baseline_name(b"Makefile", "2026-11-24") == b"Makefile-baseline-2026-11-24"
    assert baseline_name(b"a.tar.gz", "2026-11-24") == b"a.tar-baseline-2026-11-24.gz"


def test_a_long_chain_of_diffs_keeps_the_newest_version_whole(backup: Backup) -> None:
    """Fewer than COPY_AFTER diffs after the baseline: no whole copy (the history costs
    what changed); from then on the newest version is kept whole as well, so no
    change ever rebuilds a longer chain first."""
    from pipeline.versioned import COPY_AFTER
    text = "".join(f"line {n}\n" for n in range(200))
    make_tree(backup.src, {"a.txt": text})
    backup.doit("versioned", check=True)
    hist = backup.versions / "a.txt"
    for n in range(1, COPY_AFTER + 2):
        text += f"change {n}\n"
        (backup.src / "a.txt").write_text(text)
        backup.doit("versioned", check=True)
        rows = history_of(backup, "a.txt")
        copies = [r.copy for r in rows if r.copy is not None]
        if n < COPY_AFTER:
            assert copies == [] and not (hist / "a.txt_versions").exists(), n
        else:
            assert copies == [rows[-1].copy], n          # the newest only
            assert len(list((hist / "a.txt_versions").iterdir())) == 1, n
    assert [r.kind for r in history_of(backup, "a.txt")] == ["baseline"] + ["diff"] * (COPY_AFTER + 1)
    assert rebuilt(backup, "a.txt")[-1] == text.encode()
    assert backup.doit("verify", "--deep").returncode == 0


@pytest.mark.parametrize("damage", ["bytes changed", "a symlink in its place"])
def test_a_damaged_chain_keeps_the_version_before_whole(backup: Backup, damage: str) -> None:
    """The previous version's whole copy goes only when the chain since the baseline
    still rebuilds it (each object checked against its checksum, each folder of the
    history opened once, never through a link): with an object of the chain damaged,
    the copy stays, the version's only good record, and restores."""
    from pipeline.versioned import COPY_AFTER
    text = "".join(f"line {n}\n" for n in range(50))
    make_tree(backup.src, {"a.txt": text})
    aged(backup.src)
    assert backup.run("versioned")[0] == 0
    for n in range(1, COPY_AFTER + 1):
        text += f"change {n}\n"
        (backup.src / "a.txt").write_text(text)
        assert backup.run("versioned")[0] == 0
    before = history_of(backup, "a.txt")[-1]
    assert before.copy is not None
    diffs = backup.versions / "a.txt" / "a.txt_diffs"
    # (not by name: versions within one second are _2, _3 ... _10, which sort before _2)
    first = next(p for p in diffs.iterdir() if b"+change 1\n" in p.read_bytes())
    if damage == "bytes changed":
        first.write_bytes(first.read_bytes().replace(b"change 1", b"chAnge 1"))
    else:
        elsewhere = backup.base / "elsewhere.diff"
        elsewhere.write_bytes(first.read_bytes())
        first.unlink()
        first.symlink_to(elsewhere)
    (backup.src / "a.txt").write_text(text + "one more\n")
    assert backup.run("versioned")[0] == 0
    rows = {r.id: r for r in history_of(backup, "a.txt")}
    assert rows[before.id].copy == before.copy                    # kept: not superseded
    out = backup.base / "restored"
    code, said = backup.run("restore", "src/a.txt", "--at", before.run_id, "--to", str(out))
    assert code == 0, said
    assert (out / "a.txt").read_text() == text
