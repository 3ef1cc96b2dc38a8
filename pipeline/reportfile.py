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

from . import layout

_DIR = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC   # (a folder searchable, not readable: 0711)
MAX_LINKS = 40                 # as the kernel's limit on links followed in one path


def write(path: str, data: bytes, destination: Path) -> None:
    """Write ``data`` to ``path`` (absolute) as a new file: mode 0644 less the umask, or
    the mode of the file it replaces."""
    folder_b, name = os.path.split(os.fsencode(path))
    if not name or name in (b".", b".."):
        raise OSError(errno.EISDIR, "names a folder, not a file")
    folder = _open_folder(folder_b, destination)
    try:
        _refuse_inside(folder, destination)
        mode = 0o644 & ~_umask()
        try:
            there = os.lstat(name, dir_fd=folder)
        except FileNotFoundError:
            there = None
        kind = stat.S_IFMT(there.st_mode) if there is not None else stat.S_IFREG
        if kind in (stat.S_IFCHR, stat.S_IFBLK, stat.S_IFSOCK):
            raise OSError(errno.EEXIST, "a device or socket is there, left as it is")
        if kind == stat.S_IFDIR:
            raise OSError(errno.EISDIR, "a folder is there")
        if kind == stat.S_IFLNK and _leads_to_folder(folder, name):
            raise OSError(errno.EEXIST, "a link to a folder is there, left as it is")
        if there is not None and kind == stat.S_IFREG and there.st_uid == os.geteuid():
            mode = stat.S_IMODE(there.st_mode) & 0o666    # (a private report stays so)
        tmp = f".~snapback-{os.urandom(6).hex()}.tmp".encode()
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                      0o600, dir_fd=folder)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(out, view):]
                os.fchmod(out, mode)
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


def _leads_to_folder(folder: int, name: bytes) -> bool:
    """Does the link ``name`` lead to a folder?  Such a link is no report; it may be the
    way the plan reaches the destination (helper-62, helper-63: `--report` at a link to
    the destination, or to a folder above it, replaced it, and every later run failed)."""
    try:
        return stat.S_ISDIR(os.stat(name, dir_fd=folder).st_mode)
    except OSError:
        return False


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _open_folder(path: bytes, destination: Path) -> int:
    """``path`` opened as a folder, walked from ``/`` one name at a time; missing folders
    are made, never in the destination (helper-63: a folder made there before the check
    stopped the catalog from opening); a link is followed only when this user or root
    owns it."""
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
                _refuse_inside(fd, destination)
                _refuse_making(fd, part, destination)
                try:
                    os.mkdir(part, 0o755, dir_fd=fd)
                except FileExistsError:
                    pass                          # (made meanwhile: opened next time round)
                parts.insert(0, part)
                continue
            except OSError:
                # the link itself, opened: its owner and its target read from the same
                # inode (helper-62: a link swapped between lstat and readlink)
                link = os.open(part, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
                try:
                    st = os.fstat(link)
                    if not stat.S_ISLNK(st.st_mode):
                        raise
                    if st.st_uid not in (euid, 0):
                        raise OSError(errno.EPERM, f"{os.fsdecode(part)!r} on the way is a "
                                      "link another user owns (not followed)") from None
                    target = os.fsencode(os.readlink("", dir_fd=link))
                finally:
                    os.close(link)
                links += 1
                if links > MAX_LINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP)) from None
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
    """OSError when the opened ``folder`` is the destination or below it, or below a
    filesystem mounted in it (an area on a disk of its own, README "Power loss"):
    going up by ``..``, a folder with the device and inode of one of them (a bind mount
    of one is it too), or the root of a mount whose root is one of them or a folder in
    it within their filesystem (a bind mount of ``.snapback`` or of a mirror folder,
    whose ``..`` leaves the destination: helper-62; of an area on a disk of its own:
    helper-64)."""
    dest_b = os.fsencode(destination)
    mounts = layout.mount_table()
    protected: list[tuple[int, int, bytes | None]] = []    # (device, inode, inner path)
    for place in [dest_b, *(point for point, _st in layout.mounts_under(dest_b, mounts))]:
        try:
            st = os.stat(place)
            fd = os.open(place, _DIR)
        except OSError:
            continue
        try:
            inner = _inner_path(fd, os.path.realpath(place), mounts)
        finally:
            os.close(fd)
        protected.append((st.st_dev, st.st_ino, inner))
    if not protected:
        return
    cur = os.dup(folder)
    try:
        while True:
            st = os.fstat(cur)
            if any((st.st_dev, st.st_ino) == (dev, ino) for dev, ino, _inner in protected):
                raise OSError(errno.EPERM, f"it is inside the backup destination "
                              f"{destination}")
            up = os.open(b"..", _DIR, dir_fd=cur)
            mount, up_mount = _mount_id(cur), _mount_id(up)
            if mount != up_mount and mount in mounts:
                root = mounts[mount][0]            # this folder, within its filesystem
                if any(inner is not None and st.st_dev == dev and (
                        root == inner or root.startswith(inner.rstrip(b"/") + b"/"))
                       for dev, _ino, inner in protected):
                    os.close(up)
                    raise OSError(errno.EPERM, f"it is inside the backup destination "
                                  f"{destination} (mounted elsewhere)")
            ust = os.fstat(up)
            os.close(cur)
            cur = up
            if (ust.st_dev, ust.st_ino) == (st.st_dev, st.st_ino):
                return                           # the root
    finally:
        os.close(cur)


def _refuse_making(folder: int, name: bytes, destination: Path) -> None:
    """``name`` is to be made in ``folder``: not when it is the destination, not made yet
    (a dry run: helper-64, the report's walk made it 0755)."""
    real = os.path.realpath(destination)
    if os.path.basename(os.fsencode(real)) != name:
        return
    try:
        parent = os.stat(os.path.dirname(real))
    except OSError:
        return
    st = os.fstat(folder)
    if (st.st_dev, st.st_ino) == (parent.st_dev, parent.st_ino):
        raise OSError(errno.EPERM, f"it would make the backup destination {destination}")


def _mount_id(fd: int) -> int | None:
    try:
        with open(f"/proc/self/fdinfo/{fd}") as fh:
            for line in fh:
                if line.startswith("mnt_id:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _inner_path(fd: int, real: bytes, mounts: dict[int, tuple[bytes, bytes]]
                ) -> bytes | None:
    """The path of the folder open as ``fd`` (at ``real``) within its filesystem."""
    mount = _mount_id(fd)
    if mount not in mounts:
        return None
    root, point = mounts[mount]
    if real != point and not real.startswith(point.rstrip(b"/") + b"/"):
        return None
    rest = real[len(point.rstrip(b"/")):]
    return (root.rstrip(b"/") + rest) or b"/"
