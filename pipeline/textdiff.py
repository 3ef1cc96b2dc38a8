"""Standard unified diffs of bytes, and applying them back, byte for byte.

Lines end at ``\\n`` only, as GNU diff and patch count them: a ``\\r`` stays part
of its line, so CRLF and mixed line ends round-trip, and so do bytes that are
not UTF-8.  A last line without ``\\n`` gets the standard
``\\ No newline at end of file`` marker, which difflib does not write.  GNU
``patch`` applies these diffs; ``apply`` is the same in Python, strict about
context, so a damaged diff is an error and never a wrong file.
"""

from __future__ import annotations

import difflib
import re

NO_NEWLINE = b"\\ No newline at end of file\n"
_HUNK = re.compile(rb"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
# difflib's matcher is quadratic at worst: past this many line pairs a change is
# stored as a full copy instead, so no file makes a run take minutes.
MAX_LINE_PAIRS = 40_000_000


class PatchError(Exception):
    """A diff does not apply to the version it claims to follow."""


def is_text(data: bytes) -> bool:
    """Text is anything without a NUL byte (any encoding, any line ends)."""
    return b"\0" not in data


def split_lines(data: bytes) -> list[bytes]:
    parts = data.split(b"\n")
    lines = [part + b"\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def quote_name(name: bytes) -> bytes:
    """A file name as GNU diff writes it in a header: as it is when it is plain, else
    in double quotes with C escapes (a newline in a name must never end the header
    line and be read as a hunk)."""
    if all(0x20 < c < 0x7f and c not in b'"\\' for c in name):
        return name
    out = bytearray(b'"')
    for c in name:
        if c in _ESCAPES:
            out += _ESCAPES[c]
        elif 0x20 <= c < 0x7f:
            out.append(c)
        else:
            out += b"\\%03o" % c
    return bytes(out + b'"')


_ESCAPES = {0x07: b"\\a", 0x08: b"\\b", 0x09: b"\\t", 0x0a: b"\\n", 0x0b: b"\\v",
            0x0c: b"\\f", 0x0d: b"\\r", 0x22: b'\\"', 0x5c: b"\\\\"}


def make_diff(old: bytes, new: bytes, old_label: bytes, new_label: bytes) -> bytes | None:
    """``diff -u`` of old -> new, or None when too costly to compute (store it whole)."""
    old_label, new_label = quote_name(old_label), quote_name(new_label)
    a, b = split_lines(old), split_lines(new)
    if len(a) * len(b) > MAX_LINE_PAIRS:
        return None
    out: list[bytes] = []
    for line in difflib.diff_bytes(difflib.unified_diff, a, b, old_label, new_label,
                                   lineterm=b"\n"):
        if line.endswith(b"\n"):
            out.append(line)
        else:                                   # the last line had no newline
            out.append(line + b"\n")
            out.append(NO_NEWLINE)
    return b"".join(out)


def apply(old: bytes, diff: bytes) -> bytes:
    """Apply a unified diff made by ``make_diff`` (or GNU diff -u) to ``old``."""
    src = split_lines(old)
    lines = split_lines(diff)
    out: list[bytes] = []
    pos = 0
    i = 0
    if len(lines) >= 2 and lines[0].startswith(b"--- ") and lines[1].startswith(b"+++ "):
        i = 2                                   # the header: names are never read as hunks
    while i < len(lines) and not lines[i].startswith(b"@@"):
        i += 1
    if i == len(lines) and old != b"" and lines:
        raise PatchError("no hunk in the diff")
    while i < len(lines):
        match = _HUNK.match(lines[i])
        if not match:
            raise PatchError(f"expected a hunk header, got {lines[i][:60]!r}")
        old_start = int(match.group(1))
        old_len = int(match.group(2)) if match.group(2) is not None else 1
        start = old_start - 1 if old_len else old_start
        if start < pos or start > len(src):
            raise PatchError(f"hunk at line {old_start} is out of place")
        out.extend(src[pos:start])
        pos = start
        i += 1
        while i < len(lines) and not lines[i].startswith(b"@@"):
            line = lines[i]
            tag, body = line[:1], line[1:]
            if i + 1 < len(lines) and lines[i + 1] == NO_NEWLINE:
                body = body[:-1]
                i += 1
            if tag in (b" ", b"-"):
                if pos >= len(src) or src[pos] != body:
                    raise PatchError(f"context does not match at line {pos + 1}")
                if tag == b" ":
                    out.append(body)
                pos += 1
            elif tag == b"+":
                out.append(body)
            else:
                raise PatchError(f"unexpected diff line {line[:60]!r}")
            i += 1
    out.extend(src[pos:])
    return b"".join(out)
