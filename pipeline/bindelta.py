"""Binary deltas in librsync's delta format, so that ``rdiff patch`` applies them by hand.

A changed binary file (or a text file over ``max_diff_bytes``) is stored as a delta
against the version before it: a list of COPY (a range of the old version) and
LITERAL (new bytes) commands, in the format of librsync 2 (``rdiff``, the tool
rdiff-backup is built on)::

    rdiff patch OLD-VERSION  file_vSTAMP.rdiff  NEW-VERSION

The encoder is ours, in plain Python, and reads both files as streams: memory is
bounded by the block index (at most ``MAX_BLOCKS`` entries, whatever the file's
size) and one window of the new file.  It finds what real files keep between
versions:

- blocks left where they were (a database page, a disk image's sectors, an
  appended log): each aligned block of the new file is looked up among the old
  file's blocks (a dictionary of their digests);
- bytes shifted by an insertion or a deletion: after a miss, the next old blocks are
  searched for in the window ahead (``bytes.find``, in C), and the alignment
  follows them.

The encoder never trusts a digest alone: the delta is applied (streaming) and its
result checked against the new version's sha256 before it is used.  A delta that is
not much smaller than the file (``limit``) is abandoned: the version is stored whole.
"""

from __future__ import annotations

import bisect
import hashlib
import io
import os
import struct
from collections.abc import Callable, Iterator
from typing import BinaryIO

MAGIC = 0x72730236                 # RS_DELTA_MAGIC: "rs\x026"
OP_END = 0x00
OP_LITERAL_N = (0x41, 0x42, 0x43, 0x44)   # length in 1, 2, 4, 8 bytes
OP_COPY = 0x45                     # + 4 * (offset width index) + (length width index)
WIDTHS = (1, 2, 4, 8)
FORMATS = {1: ">B", 2: ">H", 4: ">I", 8: ">Q"}

MIN_SIZE = 16 << 10               # smaller files are stored whole
MIN_BLOCK = 4096
MAX_BLOCKS = 1 << 16               # the index holds at most this many blocks
WINDOW = 2 << 20                   # how far ahead a shifted block is looked for
PROBES = (0, 1, 2, 4, 8, 16, 32, 64, 128, 256)   # old blocks after the expected one looked for
READ = 1 << 20


class DeltaError(Exception):
    """A delta that is not one of ours or librsync's, or that does not fit its basis."""


def block_size(old_size: int) -> int:
    """Blocks of 4 KiB, larger for files over 256 MiB so the index stays bounded."""
    size = MIN_BLOCK
    while old_size // size > MAX_BLOCKS:
        size *= 2
    return size


def _digest(data: bytes | memoryview) -> bytes:
    return hashlib.blake2b(data, digest_size=20).digest()


def _width(value: int) -> int:
    for i, width in enumerate(WIDTHS):
        if value < 1 << (8 * width):
            return i
    raise ValueError("value too large for a delta")


class _Writer:
    """Writes commands, merging adjacent copies; counts bytes against a limit."""

    def __init__(self, out: BinaryIO, limit: int) -> None:
        self.out, self.limit, self.size = out, limit, 4
        self.copy_at, self.copy_len = 0, 0
        out.write(struct.pack(">I", MAGIC))

    def _put(self, data: bytes | memoryview) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise _TooBig
        self.out.write(data)

    def copy(self, offset: int, length: int) -> None:
        if self.copy_len and self.copy_at + self.copy_len == offset:
            self.copy_len += length
            return
        self._flush_copy()
        self.copy_at, self.copy_len = offset, length

    def _flush_copy(self) -> None:
        if not self.copy_len:
            return
        wo, wl = _width(self.copy_at), _width(self.copy_len)
        self._put(bytes([OP_COPY + 4 * wo + wl])
                  + struct.pack(FORMATS[WIDTHS[wo]], self.copy_at)
                  + struct.pack(FORMATS[WIDTHS[wl]], self.copy_len))
        self.copy_len = 0

    def literal(self, data: bytes | memoryview) -> None:
        if not data:
            return
        self._flush_copy()
        if len(data) <= 64:
            self._put(bytes([len(data)]))
        else:
            w = _width(len(data))
            self._put(bytes([OP_LITERAL_N[w]]) + struct.pack(FORMATS[WIDTHS[w]], len(data)))
        self._put(data)

    def end(self) -> None:
        self._flush_copy()
        self._put(bytes([OP_END]))


class _TooBig(Exception):
    pass


Reader = Callable[[int, int], bytes]      # (length, offset) -> bytes, as os.pread


def make(old_at: Reader, old_size: int, new_fd: int, out: BinaryIO, limit: int
         ) -> tuple[int | None, str]:
    """Write the delta old -> new to ``out``.  Returns its size, or None when it would
    pass ``limit`` bytes (then ``out`` holds a partial delta: discard it), and the
    sha256 of the old version as read (the caller checks it is the version it
    means).  The old version is read by ``old_at`` (as os.pread: a file, or a
    ``Chain``), the new file with pread; neither is held in memory."""
    return _make(old_at, old_size, lambda n, at: os.pread(new_fd, n, at), out, limit)


def make_bytes(old: bytes, new: bytes, limit: int) -> bytes | None:
    """The delta old -> new, in memory (prune's rebasing); None when over ``limit``."""
    out = io.BytesIO()
    size, _ = _make(lambda n, at: old[at:at + n], len(old), lambda n, at: new[at:at + n],
                    out, limit)
    return None if size is None else out.getvalue()


def _make(old_at: Reader, old_size: int, new_at: Reader, out: BinaryIO, limit: int
          ) -> tuple[int | None, str]:
    bsize = block_size(old_size)
    digests: list[bytes] = []
    index: dict[bytes, int] = {}
    whole = hashlib.sha256()
    offset = 0
    while offset < old_size:
        block = old_at(bsize, offset)
        if not block:
            break
        whole.update(block)
        if len(block) == bsize:
            d = _digest(block)
            index.setdefault(d, len(digests))
            digests.append(d)
        offset += len(block)
    writer = _Writer(out, limit)
    try:
        _encode(old_at, old_size, new_at, bsize, digests, index, writer)
        writer.end()
    except _TooBig:
        return None, whole.hexdigest()
    return writer.size, whole.hexdigest()


def _encode(old_at: Reader, old_size: int, new_at: Reader, bsize: int, digests: list[bytes],
            index: dict[bytes, int], writer: _Writer) -> None:
    buf = b""
    base = 0                    # offset in the new file of buf[0]
    eof = False
    p = 0                       # position in buf
    lit = 0                     # start in buf of the pending literal
    expect = 0                  # the old block that would follow the last match
    quiet = 0                   # blocks to skip before the next search (after failures)
    backoff = 1
    while True:
        if not eof and len(buf) - p < bsize + WINDOW:
            writer.literal(memoryview(buf)[lit:p])
            buf, base, lit, p = buf[p:], base + p, 0, 0
            chunk = new_at(READ + bsize + WINDOW - len(buf), base + len(buf))
            eof = not chunk
            buf += chunk
            continue
        rest = len(buf) - p
        if rest == 0:
            break
        if rest < bsize:                                  # the tail
            tail = old_at(rest, expect * bsize) if expect * bsize < old_size else b""
            if tail == buf[p:]:
                writer.literal(memoryview(buf)[lit:p])
                writer.copy(expect * bsize, rest)
                lit = p = len(buf)
            else:
                p = len(buf)
            continue
        block = memoryview(buf)[p:p + bsize]
        d = _digest(block)
        n = expect if expect < len(digests) and digests[expect] == d else index.get(d)
        if n is not None:
            writer.literal(memoryview(buf)[lit:p])
            writer.copy(n * bsize, bsize)
            p += bsize
            lit, expect, backoff = p, n + 1, 1
            continue
        if quiet:
            quiet -= 1
        else:
            found = _search(old_at, old_size, bsize, expect, buf, p)
            if found is not None:
                q, n = found
                writer.literal(memoryview(buf)[lit:q])
                writer.copy(n * bsize, bsize)
                p = lit = q + bsize
                expect, backoff = n + 1, 1
                continue
            quiet, backoff = backoff, min(backoff * 2, 64)
        p += bsize                     # overwritten in place, most likely
        expect += 1
    writer.literal(memoryview(buf)[lit:])


def _search(old_at: Reader, old_size: int, bsize: int, expect: int, buf: bytes,
            p: int) -> tuple[int, int] | None:
    """Where in the window ahead one of the old blocks after ``expect`` went."""
    for step in PROBES:
        n = expect + step
        if (n + 1) * bsize > old_size:
            return None
        wanted = old_at(bsize, n * bsize)
        q = buf.find(wanted, p + 1, p + bsize + WINDOW)
        if q >= 0:
            return q, n
    return None


def _read_exact(fh: BinaryIO, n: int) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise DeltaError("the delta ends early")
    return data


def _ops(delta: BinaryIO) -> Iterator[tuple[int, int, int]]:
    """The delta's commands as (offset, length, -1) for a copy from the basis and
    (0, length, position of the bytes in the delta) for new bytes, which are skipped."""
    if struct.unpack(">I", _read_exact(delta, 4))[0] != MAGIC:
        raise DeltaError("not a librsync delta")
    while True:
        op = _read_exact(delta, 1)[0]
        if op == OP_END:
            if delta.read(1):
                raise DeltaError("data after the end of the delta")
            return
        if 1 <= op <= 64 or op in OP_LITERAL_N:
            if op <= 64:
                length = op
            else:
                w = WIDTHS[OP_LITERAL_N.index(op)]
                length = struct.unpack(FORMATS[w], _read_exact(delta, w))[0]
            at = delta.tell()
            yield 0, length, at
            delta.seek(at + length)
        elif OP_COPY <= op < OP_COPY + 16:
            wo, wl = WIDTHS[(op - OP_COPY) // 4], WIDTHS[(op - OP_COPY) % 4]
            offset = struct.unpack(FORMATS[wo], _read_exact(delta, wo))[0]
            length = struct.unpack(FORMATS[wl], _read_exact(delta, wl))[0]
            yield offset, length, -1
        else:
            raise DeltaError(f"unknown delta command 0x{op:02x}")


def commands(delta: BinaryIO) -> Iterator[tuple[int, int, bytes | None]]:
    """The delta's commands: (offset, length, None) copies from the basis,
    (0, length, bytes) is new bytes (in pieces of at most 1 MiB)."""
    for offset, length, at in _ops(delta):
        if at < 0:
            yield offset, length, None
            continue
        delta.seek(at)
        while length:
            part = min(length, READ)
            yield 0, part, _read_exact(delta, part)
            length -= part


def patch(old_at: Reader, old_size: int, delta: BinaryIO, write: Callable[[bytes], object]
          ) -> None:
    """Apply ``delta`` to the basis read by ``old_at`` (as os.pread), handing the new
    bytes to ``write`` in pieces of at most 1 MiB."""
    for offset, length, data in commands(delta):
        if data is not None:
            write(data)
            continue
        if offset + length > old_size:
            raise DeltaError("the delta copies past the end of its basis")
        while length:
            part = old_at(min(length, READ), offset)
            if not part:
                raise DeltaError("the basis ended while it was read")
            write(part)
            offset, length = offset + len(part), length - len(part)


class Chain:
    """One version of a file as pieces of stored files: a whole file (a baseline or
    full copy) with deltas applied on top, none of them written out.  ``read`` is
    os.pread's; memory is the list of pieces (at most the deltas' commands), never
    the file.  The next delta's basis, and a restore, read a version this way."""

    def __init__(self, fd: int) -> None:
        self.size = os.fstat(fd).st_size
        self.starts = [0]
        self.pieces: list[tuple[int, int, int]] = [(self.size, fd, 0)]  # (length, fd, at)

    def apply(self, delta_fd: int) -> None:
        """The version the delta in ``delta_fd`` makes of this one (fd kept open)."""
        starts: list[int] = []
        pieces: list[tuple[int, int, int]] = []
        pos = 0
        with os.fdopen(os.dup(delta_fd), "rb") as fh:
            for offset, length, at in _ops(fh):
                if at >= 0:
                    starts.append(pos)
                    pieces.append((length, delta_fd, at))
                else:
                    if offset + length > self.size:
                        raise DeltaError("the delta copies past the end of its basis")
                    for piece in self._slice(length, offset):
                        starts.append(pos + piece[0])
                        pieces.append(piece[1:])
                pos += length
        self.starts, self.pieces, self.size = starts, pieces, pos

    def _slice(self, n: int, offset: int) -> Iterator[tuple[int, int, int, int]]:
        """(position in the range, length, fd, at) of the pieces over [offset, +n)."""
        i = max(bisect.bisect_right(self.starts, offset) - 1, 0)
        done = 0
        while done < n and i < len(self.pieces):
            length, fd, at = self.pieces[i]
            skip = offset + done - self.starts[i]
            take = min(length - skip, n - done)
            if take > 0:
                yield done, take, fd, at + skip
                done += take
            i += 1

    def read(self, n: int, offset: int) -> bytes:
        out = []
        for _pos, length, fd, at in self._slice(min(n, max(self.size - offset, 0)), offset):
            data = os.pread(fd, length, at)
            if len(data) != length:
                raise DeltaError("a stored file ended while it was read")
            out.append(data)
        return b"".join(out)


def apply(old: bytes, delta: bytes) -> bytes:
    """The new version, from its basis and the delta, in memory."""
    out: list[bytes] = []
    view = memoryview(old)
    for offset, length, data in commands(io.BytesIO(delta)):
        if data is not None:
            out.append(data)
            continue
        if offset + length > len(old):
            raise DeltaError("the delta copies past the end of its basis")
        out.append(bytes(view[offset:offset + length]))
    return b"".join(out)


def sha256_patched(old_at: Reader, old_size: int, delta_path: bytes) -> str:
    """The sha256 of what the delta rebuilds, without writing it."""
    digest = hashlib.sha256()
    with open(delta_path, "rb") as fh:
        patch(old_at, old_size, fh, digest.update)
    return digest.hexdigest()
