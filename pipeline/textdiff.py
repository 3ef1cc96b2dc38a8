"""Standard unified diffs of bytes, and applying them back, byte for byte.

Lines end at ``\\n`` only, as GNU diff and patch count them: a ``\\r`` stays part
of its line, so CRLF and mixed line ends round-trip, and so do bytes that are
not UTF-8.  A last line without ``\\n`` gets the standard
``\\ No newline at end of file`` marker.  GNU ``patch`` applies these diffs;
``apply`` is the same in Python, strict about context, so a damaged diff is an
error and never a wrong file.

How a diff is found, in near-linear time for the usual edits:

1. the common prefix and suffix are skipped byte-wise (C speed: a growing log or
   a one-line edit costs a memcmp of the file, and only the lines between are
   split), keeping three lines of context on each side;
2. the lines between are numbered (equal lines, equal numbers) and matched by
   patience diff: lines that occur once in each side anchor the match (their
   longest increasing run), and the gaps between anchors are matched again the
   same way;
3. a gap without such a line gets Myers' O(ND) algorithm with its linear-space
   refinement (the middle snake), which is optimal and fast when little changed.

All of this runs against a work budget (``WORK_BUDGET`` steps, about 3 s):
a gap that would cost more is diffed coarsely, as all of it removed and all of
it added, which is still a correct diff.  ``make_diff`` returns None (keep the
version whole) when the diff would not be smaller than the new version, so two
unrelated 8 MiB texts cost a tenth of a second.  Memory: the two texts' line
numbers and each distinct line once, a few times the texts' size at most
(bench/diffspeed.py measures both).
"""

from __future__ import annotations

import bisect
import io
import itertools
import math
import re
from collections import Counter
from collections.abc import Sequence

NO_NEWLINE = b"\\ No newline at end of file\n"
_HUNK = re.compile(rb"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
CONTEXT = 3                         # lines of context around a change, as diff -u
# Steps of matching work one diff may take (a step: a line counted, compared or
# tried by Myers; 3 to 4 million a second here, so about 3 s).  Past it, what
# is left is diffed coarsely (see the module's docstring).
WORK_BUDGET = 10_000_000
# A version up to this size is a diff whatever the diff's size (either takes one
# block on disk); a larger one is kept whole when its diff would not be smaller.
SMALL = 4096
_CHUNK = 1 << 16

Block = tuple[int, int, int]        # (line in old, line in new, length): equal lines


class PatchError(Exception):
    """A diff does not apply to the version it claims to follow."""


def is_text(data: bytes) -> bool:
    """Text is anything without a NUL byte (any encoding, any line ends)."""
    return b"\0" not in data


def split_lines(data: bytes) -> list[bytes]:
    """The lines of ``data``, each with its ``\\n`` (the last one may have none)."""
    return io.BytesIO(data).readlines()


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


def make_diff(old: bytes, new: bytes, old_label: bytes, new_label: bytes, *,
              coarse_ok: bool = False) -> bytes | None:
    """``diff -u`` of old -> new (empty when they are equal).

    None when the diff would not be smaller than ``new`` (a diff that took more
    than the work budget, or of a version over ``SMALL`` bytes): the caller keeps
    the version whole.  With ``coarse_ok`` the diff is returned anyway (to show
    it), never None.
    """
    if old == new:
        return b""
    old_label, new_label = quote_name(old_label), quote_name(new_label)
    # 1. the common prefix and suffix, whole lines, without splitting them
    start = _common_prefix(old, new)
    start = old.rfind(b"\n", 0, start) + 1                  # back to a line start
    tail = _common_suffix(old, new, start)
    if tail:
        cut_old, cut_new = len(old) - tail, len(new) - tail
        if not (_line_start(old, cut_old, start) and _line_start(new, cut_new, start)):
            nl = old.find(b"\n", cut_old)                   # on to the next line start
            tail = 0 if nl < 0 else len(old) - nl - 1
    before = start
    for _ in range(CONTEXT):                                # context from the prefix
        if before == 0:
            break
        before = old.rfind(b"\n", 0, before - 1) + 1
    after = tail
    for _ in range(CONTEXT):                                # and from the suffix
        if after == 0:
            break
        nl = old.find(b"\n", len(old) - after)
        after = 0 if nl < 0 else len(old) - nl - 1
    base = old.count(b"\n", 0, before)                      # lines skipped, in both
    # 2. and 3. number the lines (equal lines, equal numbers; ``lines`` holds each
    # distinct line once), match them
    numbers: dict[bytes, int] = {}
    a = [numbers.setdefault(line, len(numbers))
         for line in io.BytesIO(old[before:len(old) - after])]
    b = [numbers.setdefault(line, len(numbers))
         for line in io.BytesIO(new[before:len(new) - after])]
    lines = list(numbers)
    del numbers
    budget = _Budget(WORK_BUDGET)
    blocks = _match(a, b, budget)
    changes = _changes(blocks, len(a), len(b))
    if not coarse_ok and (budget.coarse or len(new) > SMALL):
        least = sum(len(lines[k]) + 1 for i1, i2, j1, j2 in changes
                    for k in itertools.chain(a[i1:i2], b[j1:j2]))
        if least >= len(new):
            return None                          # not worth it: keep the version whole
    out = [b"--- " + old_label + b"\n", b"+++ " + new_label + b"\n"]
    _unified(out, a, b, lines, changes, base)
    return b"".join(out)


def _common_prefix(x: bytes, y: bytes) -> int:
    """How many leading bytes x and y share."""
    limit = min(len(x), len(y))
    pos = 0
    while pos < limit and x[pos:pos + _CHUNK] == y[pos:pos + _CHUNK]:
        pos += _CHUNK
    if pos >= limit:
        return limit
    lo, hi = pos, min(pos + _CHUNK, limit)       # x[:lo] == y[:lo]; they differ before hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if x[lo:mid] == y[lo:mid]:
            lo = mid
        else:
            hi = mid
    return lo if x[lo] != y[lo] else hi


def _common_suffix(x: bytes, y: bytes, floor: int) -> int:
    """How many trailing bytes x and y share, not reaching back before ``floor``."""
    limit = min(len(x), len(y)) - floor
    lx, ly = len(x), len(y)
    n = 0
    while n < limit and x[max(lx - n - _CHUNK, lx - limit):lx - n] == \
            y[max(ly - n - _CHUNK, ly - limit):ly - n]:
        n += _CHUNK
    if n >= limit:
        return limit
    lo, hi = n, min(n + _CHUNK, limit)           # the last lo bytes are equal
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if x[lx - mid:lx - lo] == y[ly - mid:ly - lo]:
            lo = mid
        else:
            hi = mid
    return lo if x[lx - lo - 1] != y[ly - lo - 1] else hi


def _line_start(data: bytes, pos: int, floor: int) -> bool:
    return pos == floor or data[pos - 1] == 0x0a


class _Budget:
    def __init__(self, steps: int) -> None:
        self.left = steps
        self.coarse = False                      # some gap was diffed coarsely


def _match(a: Sequence[int], b: Sequence[int], budget: _Budget) -> list[Block]:
    """The equal lines of a and b, as sorted, merged blocks: patience diff, Myers in
    the gaps without an anchor, coarse past the budget."""
    found: list[Block] = []
    stack = [(0, len(a), 0, len(b))]
    while stack:
        alo, ahi, blo, bhi = stack.pop()
        alo, ahi, blo, bhi = _trim(a, alo, ahi, b, blo, bhi, found, budget)
        if alo == ahi or blo == bhi:
            continue
        if budget.left <= 0:
            budget.coarse = True
            continue
        count_a, count_b = Counter(a[alo:ahi]), Counter(b[blo:bhi])
        budget.left -= (ahi - alo) + (bhi - blo)
        shared = (count_a & count_b).total()
        if not shared:
            continue                             # nothing in common: all of it changed
        anchors = _anchors(a, alo, ahi, b, blo, bhi, count_a, count_b)
        if anchors:
            budget.left -= len(anchors)
            prev_i, prev_j = alo, blo
            for i, j in anchors:
                found.append((i, j, 1))
                stack.append((prev_i, i, prev_j, j))
                prev_i, prev_j = i + 1, j + 1
            stack.append((prev_i, ahi, prev_j, bhi))
            continue
        # no anchor: Myers, if its least cost (half the fewest edits, squared) fits
        fewest = (ahi - alo) + (bhi - blo) - 2 * shared
        if (fewest // 2) ** 2 > budget.left:
            budget.coarse = True
            continue
        gap: list[Block] = []
        if _myers(a, alo, ahi, b, blo, bhi, gap, budget):
            found.extend(gap)
        else:
            budget.coarse = True
    found.sort()
    merged: list[Block] = []
    for i, j, n in found:
        if merged and merged[-1][0] + merged[-1][2] == i and merged[-1][1] + merged[-1][2] == j:
            mi, mj, mn = merged[-1]
            merged[-1] = (mi, mj, mn + n)
        else:
            merged.append((i, j, n))
    return merged


def _trim(a: Sequence[int], alo: int, ahi: int, b: Sequence[int], blo: int, bhi: int,
          found: list[Block], budget: _Budget) -> tuple[int, int, int, int]:
    """Record the equal lines at both ends of a gap; what is left between."""
    i, j = alo, blo
    while i < ahi and j < bhi and a[i] == b[j]:
        i += 1
        j += 1
    if i > alo:
        found.append((alo, blo, i - alo))
    k, m = ahi, bhi
    while k > i and m > j and a[k - 1] == b[m - 1]:
        k -= 1
        m -= 1
    if k < ahi:
        found.append((k, m, ahi - k))
    budget.left -= (i - alo) + (ahi - k)
    return i, k, j, m


def _anchors(a: Sequence[int], alo: int, ahi: int, b: Sequence[int], blo: int, bhi: int,
             count_a: Counter[int], count_b: Counter[int]) -> list[tuple[int, int]]:
    """Patience: the lines found once in each side, the longest run of them in the
    same order in both, as (line in a, line in b)."""
    where = {b[j]: j for j in range(blo, bhi) if count_b[b[j]] == 1 and count_a[b[j]] == 1}
    if not where:
        return []
    pairs = [(i, where[a[i]]) for i in range(alo, ahi) if a[i] in where]
    tops: list[int] = []                         # the smallest end of a run of each length
    ends: list[int] = []                         # the pair index ending it
    back = [-1] * len(pairs)
    for index, (_i, j) in enumerate(pairs):
        pile = bisect.bisect_left(tops, j)
        if pile == len(tops):
            tops.append(j)
            ends.append(index)
        else:
            tops[pile] = j
            ends[pile] = index
        back[index] = ends[pile - 1] if pile else -1
    run: list[tuple[int, int]] = []
    index = ends[-1]
    while index >= 0:
        run.append(pairs[index])
        index = back[index]
    run.reverse()
    return run


def _myers(a: Sequence[int], alo: int, ahi: int, b: Sequence[int], blo: int, bhi: int,
           found: list[Block], budget: _Budget) -> bool:
    """Myers' diff of a gap in linear space (divide at the middle snake); False when
    the budget ran out (``found`` is then incomplete)."""
    stack = [(alo, ahi, blo, bhi)]
    while stack:
        alo, ahi, blo, bhi = stack.pop()
        alo, ahi, blo, bhi = _trim(a, alo, ahi, b, blo, bhi, found, budget)
        if alo == ahi or blo == bhi:
            continue
        snake = _middle_snake(a, alo, ahi, b, blo, bhi, budget)
        if snake is None:
            return False
        x, y, u, v = snake
        if u > x:
            found.append((x, y, u - x))
        stack.append((alo, x, blo, y))
        stack.append((u, ahi, v, bhi))
    return True


def _middle_snake(a: Sequence[int], alo: int, ahi: int, b: Sequence[int], blo: int, bhi: int,
                  budget: _Budget) -> tuple[int, int, int, int] | None:
    """The middle snake of Myers' paper (section 4b) of a gap whose ends differ: a run
    of equal lines (x, y) -> (u, v) on an optimal path, with about half the edits
    on each side.  None when the budget ran out first."""
    n, m = ahi - alo, bhi - blo
    delta = n - m
    odd = delta & 1
    # reaching d costs at least d * d steps: no list longer than the budget allows
    cap = min((n + m + 1) // 2, math.isqrt(max(budget.left, 0)) + 1)
    off = cap + 1
    forward = [0] * (2 * cap + 3)                # furthest x on each diagonal k = x - y
    reverse = [0] * (2 * cap + 3)                # the same from the ends, backwards
    for d in range(cap + 1):
        spent = 0
        for k in range(-d, d + 1, 2):
            if k == -d or (k != d and forward[off + k - 1] < forward[off + k + 1]):
                x = forward[off + k + 1]
            else:
                x = forward[off + k - 1] + 1
            y = x - k
            x0 = x
            while x < n and y < m and a[alo + x] == b[blo + y]:
                x += 1
                y += 1
            spent += x - x0 + 1
            forward[off + k] = x
            if odd and -(d - 1) <= delta - k <= d - 1 and x + reverse[off + delta - k] >= n:
                return alo + x0, blo + x0 - k, alo + x, blo + y
        for k in range(-d, d + 1, 2):
            if k == -d or (k != d and reverse[off + k - 1] < reverse[off + k + 1]):
                x = reverse[off + k + 1]
            else:
                x = reverse[off + k - 1] + 1
            y = x - k
            x0 = x
            while x < n and y < m and a[ahi - 1 - x] == b[bhi - 1 - y]:
                x += 1
                y += 1
            spent += x - x0 + 1
            reverse[off + k] = x
            if not odd and -d <= delta - k <= d and forward[off + delta - k] + x >= n:
                return alo + n - x, blo + m - y, alo + n - x0, blo + m - x0 + k
        budget.left -= spent
        if budget.left < 0:
            return None
    return None


def _changes(blocks: list[Block], len_a: int, len_b: int) -> list[tuple[int, int, int, int]]:
    """The runs of lines between the equal blocks: (a from, a to, b from, b to)."""
    changes = []
    i = j = 0
    for bi, bj, size in [*blocks, (len_a, len_b, 0)]:
        if i < bi or j < bj:
            changes.append((i, bi, j, bj))
        i, j = bi + size, bj + size
    return changes


def _unified(out: list[bytes], a: list[int], b: list[int], lines: list[bytes],
             changes: list[tuple[int, int, int, int]], base: int) -> None:
    """Hunks of ``diff -u`` (three lines of context, hunks closer than six lines
    joined); line numbers start after ``base`` lines."""
    first = 0
    while first < len(changes):
        last = first
        while last + 1 < len(changes) and changes[last + 1][0] - changes[last][1] <= 2 * CONTEXT:
            last += 1
        i1, _, j1, _ = changes[first]
        _, i2, _, j2 = changes[last]
        lead = min(CONTEXT, i1, j1)        # equal lines before: as many in a as in b
        a_from, b_from = i1 - lead, j1 - lead
        trail = min(CONTEXT, len(a) - i2, len(b) - j2)
        a_to, b_to = i2 + trail, j2 + trail
        out.append(b"@@ -%s +%s @@\n" % (_range(base + a_from, a_to - a_from),
                                          _range(base + b_from, b_to - b_from)))
        pos = a_from
        for k in range(first, last + 1):
            c_i1, c_i2, c_j1, c_j2 = changes[k]
            _lines(out, b" ", lines, a[pos:c_i1])
            _lines(out, b"-", lines, a[c_i1:c_i2])
            _lines(out, b"+", lines, b[c_j1:c_j2])
            pos = c_i2
        _lines(out, b" ", lines, a[pos:a_to])
        first = last + 1


def _range(start: int, length: int) -> bytes:
    """A hunk's range as diff -u writes it: ``3`` for one line, ``2,0`` for none."""
    if length == 1:
        return b"%d" % (start + 1)
    return b"%d,%d" % (start + 1 if length else start, length)


def _lines(out: list[bytes], tag: bytes, lines: list[bytes], numbers: list[int]) -> None:
    if not numbers:
        return
    text = list(map(lines.__getitem__, numbers))
    out.append(tag)
    out.append(tag.join(text))            # every line but the last ends with \n
    if not text[-1].endswith(b"\n"):       # the last line of the file, without one
        out.append(b"\n" + NO_NEWLINE)


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
