"""pipeline/textdiff.py: the diffs snapback writes are standard ``diff -u``: GNU patch
applied to the old bytes gives the new bytes, and so does snapback's own ``apply``."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
