"""How paths and sizes are shown to a person (one line each, units they read)."""

from __future__ import annotations


def display(path: str) -> str:
    """A path as one printable line: control characters and bytes that are not
    UTF-8 are shown escaped (``new\\nline``, ``caf\\xe9.txt``), as ``ls -b`` does."""
    if path.isprintable():
        return path
    out = []
    for ch in path:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif not ch.isprintable() and ch != " ":
            out.append(f"\\x{code:02x}" if code < 256 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def plural(count: int, word: str) -> str:
    """``1 file``, ``2 files``, ``12,478 files``."""
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def human_size(n: float) -> str:
    """1234567 -> '1.2 MB' (decimal units, as ls -h --si and rsync print)."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"
