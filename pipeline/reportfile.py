"""``--report FILE``: the run's report written where the user asked, and nowhere else.

Cron's reports often go into /tmp, which every user can write, and snapback often runs
as root; the report is a new file renamed into place, so:

- the folders on the way are opened one at a time from ``/``, each without following a
  link (``O_NOFOLLOW``); a link on the way is followed only when the running user or
  root owns it (a link another user planted in /tmp is not: helper-61, root's report
  went into a 0700 folder of root's through one), and a missing folder is made there;
- the folder reached, opened, is refused when it is the backup's destination or inside
  it, however it was reached (another path, a bind mount, a link swapped in while the
  run went on: helper-61, a report over ``.snapback/catalog.sqlite3`` lost the backup);
- a link or FIFO at FILE is replaced, never followed or opened; a device or socket is
  left as it is (helper-60, as root a report over /dev/full replaced the device);
- the new file is made and renamed in the folder opened, so nothing swapped in after
  the checks changes where it goes.

Any refusal is an ``OSError``, which the reporter says in one warning line.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
MAX_LINKS = 40                 # as the kernel's limit on links followed in one path


def write(path: str, data: bytes, destination: Path) -> None:
    """Write ``data`` to ``path`` (absolute) as a new file, mode 0644 less the umask."""
    folder_b, name = os.path.split(os.fsencode(path))
    if not name or name in (b".", b".."):
        raise OSError(errno.EISDIR, "names a folder, not a file")
    folder = _open_folder(folder_b)
    try:
        _refuse_inside(folder, destination)
        try:
            kind = stat.S_IFMT(os.lstat(name, dir_fd=folder).st_mode)
        except FileNotFoundError:
            kind = stat.S_IFREG
        if kind in (stat.S_IFCHR, stat.S_IFBLK, stat.S_IFSOCK):
            raise OSError(errno.EEXIST, "a device or socket is there, left as it is")
        if kind == stat.S_IFDIR:
            raise OSError(errno.EISDIR, "a folder is there")
        tmp = f".~snapback-{os.urandom(6).hex()}.tmp".encode()
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                      0o644, dir_fd=folder)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(out, view):]
            finally:
                os.close(out)
            os.replace(tmp, name, src_dir_fd=folder, dst_dir_fd=folder)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=folder)
            except OSError:
                pass
            raise
    finally:
        os.close(folder)


def _open_folder(path: bytes) -> int:
    """``path`` opened as a folder, walked from ``/`` one name at a time; missing folders
    are made; a link is followed only when this user or root owns it."""
    euid = os.geteuid()
    parts = [p for p in path.split(b"/") if p]
    fd = os.open(b"/", _DIR)
    links = 0
    try:
        while parts:
            part = parts.pop(0)
            try:
                nxt = os.open(part, _DIR | os.O_NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass                          # (made meanwhile: opened next time round)
                parts.insert(0, part)
                continue
            except OSError:
                st = os.lstat(part, dir_fd=fd)
                if not stat.S_ISLNK(st.st_mode):
                    raise
                if st.st_uid not in (euid, 0):
                    raise OSError(errno.EPERM, f"{os.fsdecode(part)} on the way is a link "
                                  "another user owns (not followed)") from None
                links += 1
                if links > MAX_LINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP)) from None
                target = os.readlink(part, dir_fd=fd)
                if target.startswith(b"/"):
                    os.close(fd)
                    fd = os.open(b"/", _DIR)
                parts[0:0] = [p for p in target.split(b"/") if p]
                continue
            os.close(fd)
            fd = nxt
        return fd
    except BaseException:
        os.close(fd)
        raise


def _refuse_inside(folder: int, destination: Path) -> None:
    """OSError when the opened ``folder`` is the destination or below it (compared by
    device and inode, going up by ``..``: a bind mount of the destination is it too)."""
    try:
        dest = os.stat(destination)
    except OSError:
        return                                   # (no destination: nothing to protect)
    cur = os.dup(folder)
    try:
        while True:
            st = os.fstat(cur)
            if (st.st_dev, st.st_ino) == (dest.st_dev, dest.st_ino):
                raise OSError(errno.EPERM, f"it is inside the backup destination "
                              f"{destination}")
            up = os.open(b"..", _DIR, dir_fd=cur)
            ust = os.fstat(up)
            os.close(cur)
            cur = up
            if (ust.st_dev, ust.st_ino) == (st.st_dev, st.st_ino):
                return                           # the root
    finally:
        os.close(cur)
