"""pipeline/textdiff.py: the diffs snapback writes are standard ``diff -u``: GNU patch
applied to the old bytes gives the new bytes, and so does snapback's own ``apply``."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import Backup, history_of, make_tree

from pipeline import textdiff
from pipeline.textdiff import PatchError, apply, make_diff

PATCH = shutil.which("patch")
needs_patch = pytest.mark.skipif(PATCH is None, reason="needs GNU patch")


def gnu_patch(tmp: Path, old: bytes, diff: bytes) -> bytes:
    """GNU patch applied to a file holding ``old``, byte for byte (--binary)."""
    target, patch_file, out = tmp / "file", tmp / "change.diff", tmp / "out"
    target.write_bytes(old)
    patch_file.write_bytes(diff)
    out.unlink(missing_ok=True)
    result = subprocess.run([PATCH, "--batch", "--binary", "-s", "-o", str(out), "-i",
                             str(patch_file), str(target)], capture_output=True)
    assert result.returncode == 0, (result.stdout + result.stderr).decode(errors="replace")
    return out.read_bytes()


CASES = {
    "add a line": (b"one\ntwo\n", b"one\ntwo\nthree\n"),
    "no final newline, old": (b"one\ntwo", b"one\nTWO\n"),
    "no final newline, new": (b"one\ntwo\n", b"one\ntwo"),
    "no final newline, both": (b"one\ntwo", b"one\nthree"),
    "CRLF": (b"one\r\ntwo\r\n", b"one\r\nzwei\r\nthree\r\n"),
    "CRLF to LF": (b"a\r\nb\r\n", b"a\nb\n"),
    "lone CR, a line of its own": (b"a\rb\nc\n", b"a\rB\nc\n"),
    "empty to text": (b"", b"hello\n"),
    "text to empty": (b"hello\nworld\n", b""),
    "empty to no newline": (b"", b"x"),
    "not UTF-8": ("caf\xe9\n".encode("latin-1"), "caf\xe9 cr\xe8me\n".encode("latin-1")),
    "far apart hunks": (b"".join(b"%d\n" % i for i in range(60)),
                        b"".join(b"%d\n" % (i * (i not in (3, 55))) for i in range(60))),
}


@needs_patch
@pytest.mark.parametrize("old, new", CASES.values(), ids=CASES.keys())
def test_gnu_patch_and_apply_give_the_new_bytes(tmp_path: Path, old: bytes, new: bytes) -> None:
    diff = make_diff(old, new, b"file", b"file")
    assert diff is not None and diff.startswith(b"--- file\n+++ file\n@@ ")
    assert gnu_patch(tmp_path, old, diff) == new
    assert apply(old, diff) == new


def test_a_last_line_without_newline_gets_the_standard_marker() -> None:
    diff = make_diff(b"a\nb", b"a\nc", b"f", b"f")
    assert diff is not None
    assert diff.endswith(b"-b\n\\ No newline at end of file\n+c\n\\ No newline at end of file\n")
    assert diff.count(textdiff.NO_NEWLINE) == 2


def test_the_same_bytes_give_an_empty_diff_that_applies_to_them() -> None:
    assert make_diff(b"same\n", b"same\n", b"f", b"f") == b""
    assert apply(b"same\n", b"") == b"same\n"


@needs_patch
@pytest.mark.parametrize("name", [b"a b.txt", b"new\nline", b'quo"te', b"back\\slash",
                                  b"tab\there", b"caf\xe9", b"\x01ctrl"])
def test_names_needing_c_quoting_are_quoted_and_gnu_patch_applies(tmp_path: Path,
                                                                   name: bytes) -> None:
    old, new = b"one\ntwo\n", b"one\n2\n"
    diff = make_diff(old, new, name, name)
    assert diff is not None
    header = diff.split(b"\n")[:2]
    quoted = textdiff.quote_name(name)
    assert header == [b"--- " + quoted, b"+++ " + quoted]
    assert quoted.startswith(b'"') and quoted.endswith(b'"') and b"\n" not in quoted
    assert gnu_patch(tmp_path, old, diff) == new        # the file named on the command line
    assert apply(old, diff) == new
    # and patch -p0 finds the file by the quoted name in the header (a plain name)
    if b"/" not in name:
        target = tmp_path / "by-name" / os.fsdecode(name)
        target.parent.mkdir()
        target.write_bytes(old)
        result = subprocess.run([PATCH, "-p0", "--batch", "--binary", "-s"], input=diff,
                                capture_output=True, cwd=target.parent)
        assert result.returncode == 0, result.stderr
        assert target.read_bytes() == new


@pytest.mark.parametrize("name, quoted", [
    (b"plain.txt", b"plain.txt"),
    (b"a b", b'"a b"'),                     # a space: GNU diff quotes it
    (b"new\nline", b'"new\\nline"'),
    (b"\x07\x08\t\x0b\x0c\r", b'"\\a\\b\\t\\v\\f\\r"'),
    (b'"\\', b'"\\"\\\\"'),
    (b"\xc3\xa9", b'"\\303\\251"'),         # bytes past ASCII: octal, as GNU diff does
    (b"\x7f", b'"\\177"'),
])
def test_quote_name(name: bytes, quoted: bytes) -> None:
    assert textdiff.quote_name(name) == quoted


def test_split_lines_keeps_every_byte() -> None:
    assert textdiff.split_lines(b"") == []
    assert textdiff.split_lines(b"a\r\nb\rc") == [b"a\r\n", b"b\rc"]
    assert textdiff.split_lines(b"\n\n") == [b"\n", b"\n"]


def test_is_text_means_no_nul() -> None:
    assert textdiff.is_text(b"caf\xe9\r\n") and textdiff.is_text(b"")
    assert not textdiff.is_text(b"a\0b")


def test_a_diff_that_does_not_fit_is_an_error_never_a_wrong_file() -> None:
    diff = make_diff(b"one\ntwo\nthree\n", b"one\n2\nthree\n", b"f", b"f")
    assert diff is not None
    with pytest.raises(PatchError, match="context does not match"):
        apply(b"one\nTWO\nthree\n", diff)
    with pytest.raises(PatchError):
        apply(b"one\n", diff)                               # the hunk is past the end
    with pytest.raises(PatchError, match="no hunk"):
        apply(b"one\n", b"--- f\n+++ f\n")
    with pytest.raises(PatchError, match="hunk header"):
        apply(b"one\n", b"--- f\n+++ f\n@@ garbage\n")
    damaged = diff.replace(b"\n-two\n", b"\n?two\n")
    with pytest.raises(PatchError, match="unexpected diff line"):
        apply(b"one\ntwo\nthree\n", damaged)


def test_a_header_line_that_looks_like_a_hunk_is_never_read_as_one() -> None:
    diff = make_diff(b"x\n", b"y\n", b"@@ -1 +1 @@", b"@@ -1 +1 @@")
    assert diff is not None and apply(b"x\n", diff) == b"y\n"


# ---- any two texts (bytes without NUL, any line ends) ----

LINE = st.builds(lambda body, end: body + end,
                 st.binary(max_size=8).filter(lambda b: b"\0" not in b and b"\n" not in b),
                 st.sampled_from([b"\n", b"\r\n", b"\r", b""]))
TEXT = st.lists(LINE, max_size=10).map(b"".join)


@settings(max_examples=150, deadline=None)
@given(old=TEXT, new=TEXT)
def test_apply_of_make_diff_gives_the_new_bytes(old: bytes, new: bytes) -> None:
    diff = make_diff(old, new, b"f", b"f")
    assert diff is not None
    assert apply(old, diff) == new


@needs_patch
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(old=TEXT, new=TEXT)
def test_gnu_patch_of_make_diff_gives_the_new_bytes(tmp_path: Path, old: bytes,
                                                    new: bytes) -> None:
    diff = make_diff(old, new, b"f", b"f")
    assert diff is not None
    if old == new:
        assert diff == b""                  # nothing to apply (patch calls it garbage)
        return
    assert gnu_patch(tmp_path, old, diff) == new


# ---- the matching itself: Myers is optimal, patience and the budget stay correct ----

def lcs_length(a: list[int], b: list[int]) -> int:
    row = [0] * (len(b) + 1)
    for x in a:
        new = [0]
        for j, y in enumerate(b):
            new.append(row[j] + 1 if x == y else max(row[j + 1], new[j]))
        row = new
    return row[-1]


def valid_blocks(a: list[int], b: list[int], blocks: list[tuple[int, int, int]]) -> int:
    """The blocks are equal runs of a and b, in order, apart: how many lines they hold."""
    i = j = 0
    for bi, bj, size in blocks:
        assert bi >= i and bj >= j and size > 0 and a[bi:bi + size] == b[bj:bj + size]
        i, j = bi + size, bj + size
    return sum(size for _i, _j, size in blocks)


SMALL_INTS = st.lists(st.integers(0, 3), max_size=30)


@settings(max_examples=300, deadline=None)
@given(a=SMALL_INTS, b=SMALL_INTS)
def test_myers_finds_a_longest_common_subsequence(a: list[int], b: list[int]) -> None:
    found: list[tuple[int, int, int]] = []
    assert textdiff._myers(a, 0, len(a), b, 0, len(b), found, textdiff._Budget(10**9))
    assert valid_blocks(a, b, sorted(found)) == lcs_length(a, b)


@settings(max_examples=300, deadline=None)
@given(a=st.lists(st.integers(0, 30), max_size=60), b=st.lists(st.integers(0, 30), max_size=60),
       budget=st.integers(0, 400))
def test_patience_and_coarse_gaps_give_valid_blocks(a: list[int], b: list[int],
                                                    budget: int) -> None:
    blocks = textdiff._match(a, b, textdiff._Budget(budget))
    valid_blocks(a, b, blocks)


# texts with many equal lines, the new one an edit of the old: patience, Myers and the
# byte-wise prefix and suffix all get work, any line end, the last line with or without
POOL = [b"a", b"b", b"}", b"", b"caf\xe9", b"x\r"]
EDITED = st.lists(st.sampled_from(POOL), max_size=60).flatmap(
    lambda old: st.tuples(
        st.just(old),
        st.lists(st.tuples(st.integers(0, 2), st.integers(0, 60), st.sampled_from(POOL)),
                 max_size=6),
        st.sampled_from([b"\n", b"\r\n"]), st.booleans(), st.booleans()))


def edited(spec: tuple) -> tuple[bytes, bytes]:
    lines, edits, end, old_final, new_final = spec
    new = list(lines)
    for op, where, line in edits:
        k = min(where, len(new))
        if op == 0:
            new.insert(k, line)
        elif new and op == 1:
            del new[min(k, len(new) - 1)]
        elif new:
            new[min(k, len(new) - 1)] = line
    def text(ls: list[bytes], final: bool) -> bytes:
        body = end.join(ls)
        return body + end if final and ls else body
    return text(lines, old_final), text(new, new_final)


@settings(max_examples=300, deadline=None)
@given(spec=EDITED, budget=st.sampled_from([0, 5, 50, textdiff.WORK_BUDGET]))
def test_edited_texts_round_trip_whatever_the_budget(spec: tuple, budget: int) -> None:
    old, new = edited(spec)
    saved = textdiff.WORK_BUDGET
    textdiff.WORK_BUDGET = budget
    try:
        shown = make_diff(old, new, b"f", b"f", coarse_ok=True)
        stored = make_diff(old, new, b"f", b"f")
    finally:
        textdiff.WORK_BUDGET = saved
    assert shown is not None and apply(old, shown) == new
    assert stored is None or apply(old, stored) == new
    if budget == saved:
        assert stored == shown                  # small texts: nothing coarse, always a diff


@needs_patch
@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=EDITED)
def test_gnu_patch_applies_diffs_of_edited_texts(tmp_path: Path, spec: tuple) -> None:
    old, new = edited(spec)
    diff = make_diff(old, new, b"f", b"f")
    assert diff is not None
    if old != new:
        assert gnu_patch(tmp_path, old, diff) == new


# ---- big files: every text up to max_diff_bytes, in near-linear time ----

def csv(lines: int, end: bytes = b"\n", seed: int = 24) -> list[bytes]:
    rng = random.Random(seed)
    return [b"%d,%d,caf\xe9,%.6f,somewhat longer%s" % (n, rng.randrange(10**9), rng.random(), end)
            for n in range(lines)]


@needs_patch
@pytest.mark.parametrize("end", [b"\n", b"\r\n"], ids=["LF", "CRLF"])
@pytest.mark.parametrize("where", [0, 50_000, 99_999], ids=["first", "middle", "last"])
@pytest.mark.parametrize("final", [True, False], ids=["final newline", "no final newline"])
def test_one_line_edit_in_a_100000_line_file_is_a_small_fast_diff(
        tmp_path: Path, end: bytes, where: int, final: bool) -> None:
    lines = csv(100_000, end)
    if not final:
        lines[-1] = lines[-1].rstrip(b"\r\n")
    old = b"".join(lines)
    lines[where] = b"edited,\xff\xfe" + (lines[where][-len(end):] if final or where < 99_999
                                          else b"")
    new = b"".join(lines)
    started = time.perf_counter()
    diff = make_diff(old, new, b"data.csv", b"data.csv")
    seconds = time.perf_counter() - started
    assert diff is not None and len(diff) < 600, diff
    assert seconds < 0.5                         # milliseconds, measured
    assert diff.count(b"\n@@ ") == 1 and diff.count(b"\n-") == 1 and diff.count(b"\n+") == 2
    assert b"@@ -%d" % (max(where - 2, 1)) in diff     # three lines of context, 1-based
    assert apply(old, diff) == new
    assert gnu_patch(tmp_path, old, diff) == new


@needs_patch
def test_scattered_edits_in_an_8_mib_file_are_a_diff(tmp_path: Path) -> None:
    lines = csv(200_000)
    old = b"".join(lines)
    assert len(old) > 8 << 20                   # max_diff_bytes' default: 8 MiB
    for k in range(len(lines) - 50, 0, -100):    # 1%: changed, inserted, deleted in turn
        [lines.__setitem__, lines.insert, lambda k, _line: lines.__delitem__(k)][k % 3](
            k, b"new %d\n" % k)
    new = b"".join(lines)
    started = time.perf_counter()
    diff = make_diff(old, new, b"f", b"f")
    seconds = time.perf_counter() - started
    assert diff is not None and len(diff) < len(new) // 10
    assert seconds < 5                           # 0.3 s measured
    assert apply(old, diff) == new
    assert gnu_patch(tmp_path, old, diff) == new


@needs_patch
def test_two_unrelated_8_mib_texts_are_kept_whole_in_bounded_time(tmp_path: Path) -> None:
    old, new = b"".join(csv(200_000, seed=1)), b"".join(csv(200_000, seed=2)).replace(
        b",caf", b",other")
    started = time.perf_counter()
    assert make_diff(old, new, b"f", b"f") is None
    assert time.perf_counter() - started < 3     # 0.1 s measured
    shown = make_diff(old, new, b"f", b"f", coarse_ok=True)   # doit diff shows it all
    assert shown is not None and gnu_patch(tmp_path, old, shown) == new


def test_the_work_budget_bounds_a_diff_without_anchors(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lines that all repeat (no anchor for patience): Myers finds two far edits within
    the budget; with a budget too small the diff is coarse, kept whole when stored."""
    rng = random.Random(7)
    lines = [rng.choice([b"0\n", b"1\n"]) for _ in range(20_000)]
    old = b"".join(lines)
    lines[100], lines[19_900] = b"x\n", b"y\n"
    new = b"".join(lines)
    diff = make_diff(old, new, b"f", b"f")
    assert diff is not None and len(diff) < 200 and apply(old, diff) == new
    monkeypatch.setattr(textdiff, "WORK_BUDGET", 1000)
    assert make_diff(old, new, b"f", b"f") is None
    coarse = make_diff(old, new, b"f", b"f", coarse_ok=True)
    assert coarse is not None and len(coarse) > len(new) and apply(old, coarse) == new


def test_a_rewrite_is_kept_whole_past_one_block_and_a_diff_below() -> None:
    small_old, small_new = b"a\nb\n" * 100, b"c\nd\n" * 100
    assert len(small_new) <= textdiff.SMALL
    small = make_diff(small_old, small_new, b"f", b"f")
    assert small is not None and apply(small_old, small) == small_new
    big_old, big_new = small_old * 30, small_new * 30
    assert make_diff(big_old, big_new, b"f", b"f") is None
    assert make_diff(big_old, big_old + b"more\n", b"f", b"f") is not None


def test_a_big_file_edited_once_stores_a_small_diff_and_doit_diff_shows_it(
        backup: Backup) -> None:
    lines = csv(100_000)
    make_tree(backup.src, {"data.csv": b"".join(lines)})
    backup.doit("versioned", check=True)
    lines[60_000] = b"60000,edited\n"
    (backup.src / "data.csv").write_bytes(b"".join(lines))
    backup.doit("versioned", check=True)
    rows = [r for r in history_of(backup, "data.csv") if r.kind != "meta"]
    assert [r.kind for r in rows] == ["baseline", "diff"]
    stored = backup.versions / os.fsdecode(rows[1].store) / os.fsdecode(rows[1].object)
    assert stored.stat().st_size < 600
    shown = backup.doit("diff", str(backup.src / "data.csv"), check=True).stdout
    assert "-60000," in shown and "+60000,edited" in shown and "@@ -59998,7 +59998,7 @@" in shown
    assert "too large" not in shown


def test_doit_diff_leaves_versions_over_its_limit_to_vscode(
        backup: Backup, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.commands import diff as diff_command
    make_tree(backup.src, {"log.txt": "one\n"})
    backup.doit("versioned", check=True)
    (backup.src / "log.txt").write_text("one\ntwo\n")
    backup.doit("versioned", check=True)
    monkeypatch.setattr(diff_command, "SHOW_LIMIT", 5)            # 8 bytes: over it
    code, out = backup.run("diff", str(backup.src / "log.txt"))
    assert code == 0 and "too large to diff here (over " in out and "try --vscode" in out
    assert "+two" not in out
    monkeypatch.setattr(diff_command, "SHOW_LIMIT", 8)
    code, out = backup.run("diff", str(backup.src / "log.txt"))
    assert code == 0 and "+two" in out
