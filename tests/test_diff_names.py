"""Hostile file names in diff headers: quoted as GNU diff/git do, never read as a hunk."""

from __future__ import annotations

import os
import subprocess

import pytest

from pipeline import textdiff

NAMES = {
    "newline": b"a\nb.txt",
    "hunk-after-newline": b"notes\n@@ -1 +1 @@",
    "backslash": b"back\\slash.txt",
    "quotes": b'say "hi".txt',
    "tab": b"a\tb.txt",
    "leading-dash": b"-rf.txt",
    "non-utf8": b"caf\xe9-\xff.txt",
    "255-bytes": b"n" * 251 + b".txt",
}
OLD = b"one\ntwo\r\nthree\n"
NEW = b"one\nTWO\r\nthree\nfour"


@pytest.mark.parametrize("name", NAMES.values(), ids=NAMES.keys())
def test_header_is_one_line_and_snapback_applies(name):
    diff = textdiff.make_diff(OLD, NEW, name, name)
    header = diff.split(b"\n")[:2]
    assert header[0].startswith(b"--- ") and header[1].startswith(b"+++ ")
    assert diff.split(b"\n")[2].startswith(b"@@ -1,3 +1,4 @@")
    assert textdiff.apply(OLD, diff) == NEW


@pytest.mark.parametrize("name", NAMES.values(), ids=NAMES.keys())
def test_gnu_patch_finds_the_file_by_its_quoted_name(tmp_path, name):
    diff = textdiff.make_diff(OLD, NEW, name, name)
    args = ["/usr/bin/patch", "-p0", "--batch", "--no-backup-if-mismatch"]
    if len(name) > 200:
        # GNU patch cannot create its temporary file beside a 255-byte name
        # (File name too long): the header is still parsed; the file is named.
        target = tmp_path / "short.txt"
        args.append("short.txt")
    else:
        target = tmp_path / os.fsdecode(name)   # patch finds it by the header's name
    target.write_bytes(OLD)
    result = subprocess.run(args, input=diff, capture_output=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr + result.stdout
    assert target.read_bytes() == NEW
    assert sorted(os.listdir(tmp_path)) == [target.name]


def test_plain_names_are_not_quoted():
    assert textdiff.quote_name(b"notes.md") == b"notes.md"
    assert textdiff.quote_name(b"a\n@@ -1 +1 @@") == b'"a\\n@@ -1 +1 @@"'
    assert textdiff.quote_name(b"\xff") == b'"\\377"'
