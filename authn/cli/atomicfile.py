"""Locked, atomic rewrites of small files (password files, group files) for the ``authn`` CLI.

Contract of :func:`rewrite`:

* **One writer at a time.** Every ``authn`` writer takes an exclusive ``flock`` on a sidecar
  lock file ``.<name>.lock`` in the same folder before it reads the file, and keeps it until
  the new file is in place. The lock is not taken on the file itself: ``os.replace`` puts a
  new inode under the name, so a writer waiting on the old inode would wake up holding a lock
  on a file nobody reads any more, and two writers would both win. The sidecar is never
  replaced or removed, so its lock always means the same thing. (``htpasswd`` itself takes no
  lock; do not run it on the same file at the same time.)
* **Old file or new file, never a mix.** The new content is written to a temp file in the
  same folder (same file system), fsynced, given the mode, owner and group of the original,
  then renamed over it with ``os.replace``, and the folder is fsynced. A writer killed at any
  point leaves the old file or the new one; readers (Apache, our server) only ever open one
  complete inode. A leftover ``.<name>.tmp.*`` from a killed writer is harmless.
* **A new file is readable by the Apache group only**: mode 0640 whatever the umask, group
  the Apache user's (:data:`APACHE_GROUPS`, the first that exists) when we may give it (as
  root, or as a member), else ours; :func:`group_note` then says what to run. ``htpasswd``
  leaves 0644 under the usual umask: every local user could read the hashes.
* **Owner and group are kept or nothing is written.** If the original belongs to another
  owner/group that we cannot give the new file (we are not root), :class:`FileProblem` is
  raised before the original is touched: a file Apache can no longer read would lock
  everybody out.

Errors are :class:`FileProblem` (with a one-line message naming the file and the fix);
anything else is a bug.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import grp
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from authn.errors import FileProblem

NEW_MODE = 0o640  #: a new file: its owner writes, the Apache group reads, nobody else
APACHE_GROUPS = ("www-data", "apache")  #: the Apache user's group: Debian's, Red Hat's


def apache_group() -> grp.struct_group | None:
    """The group of the Apache user on this machine, or None when there is none."""
    for name in APACHE_GROUPS:
        with contextlib.suppress(KeyError):
            return grp.getgrnam(name)
    return None


def group_note(path: str) -> str | None:
    """For a file we just created: a line saying how to let Apache read it when its group is
    not the Apache group (we could not give it), else None."""
    group = apache_group()
    try:
        gid = os.stat(path).st_gid
    except OSError:
        return None
    if group is None or gid == group.gr_gid:
        return None
    return (
        f"note: {path} is readable by its owner and group only, and Apache's group "
        f"{group.gr_name} is not its group; as root: chgrp {group.gr_name} {path}"
    )


@dataclass(frozen=True, slots=True)
class Original:
    """What a file was before we rewrote it: its bytes, or None when it did not exist."""

    data: bytes | None
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None


def lock_path(path: str) -> str:
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{name}.lock")


@contextlib.contextmanager
def exclusive_lock(path: str) -> Iterator[None]:
    """Hold the writers' lock of ``path`` (the sidecar ``.<name>.lock``) for the block."""
    lock_file = lock_path(path)
    try:
        # Read-only is enough for flock, so writers with different uids share one lock file.
        fd = os.open(lock_file, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise FileProblem(
            f"cannot open the lock file {lock_file}: {exc.strerror}; "
            "authn needs to create files in the folder of the file it edits"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def read_original(path: str) -> Original:
    """The current bytes and ownership of ``path``; ``data`` is None when it does not exist."""
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise FileProblem(f"{path} is not a regular file")
            data = fh.read()
    except FileNotFoundError:
        return Original(None)
    except IsADirectoryError:
        raise FileProblem(f"{path} is not a regular file") from None
    except OSError as exc:
        raise FileProblem(f"cannot open file {path} for read access: {exc.strerror}") from None
    return Original(data, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)


def replace(path: str, data: bytes, like: Original) -> None:
    """Write ``data`` to a temp file beside ``path`` and rename it over ``path``.

    The new file gets the mode, owner and group of ``like`` (or, for a new file, mode 0640
    and the Apache group when we may give it). Raises FileProblem; on any error or interruption the
    temp file is removed and ``path`` is untouched.
    """
    folder, name = os.path.split(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.tmp.", dir=folder)
    except OSError as exc:
        raise FileProblem(
            f"cannot create a temporary file in {folder}: {exc.strerror}; authn writes a new "
            "file beside the old one and renames it, so the folder must be writable"
        ) from None
    try:
        _give_ownership(fd, path, like)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
        tmp = ""
        _fsync_folder(folder)
    except OSError as exc:
        raise FileProblem(f"cannot write {path}: {exc.strerror}") from None
    finally:
        if fd >= 0:
            os.close(fd)
        if tmp:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _give_ownership(fd: int, path: str, like: Original) -> None:
    if like.mode is None:
        group = apache_group()
        if group is not None and os.fstat(fd).st_gid != group.gr_gid:
            with contextlib.suppress(PermissionError):  # not root, not a member: ours stays
                os.fchown(fd, -1, group.gr_gid)
        os.fchmod(fd, NEW_MODE)
        return
    st = os.fstat(fd)
    if (st.st_uid, st.st_gid) != (like.uid, like.gid):
        try:
            os.fchown(
                fd,
                like.uid if like.uid is not None else -1,
                like.gid if like.gid is not None else -1,
            )
        except PermissionError:
            raise FileProblem(
                f"cannot keep the owner {like.uid} and group {like.gid} of {path} "
                "(a new file would belong to us and Apache might no longer read it); "
                "run as root or as the file's owner"
            ) from None
    os.fchmod(fd, like.mode)  # after chown, which may clear setgid bits


def _fsync_folder(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems refuse fsync on folders; the rename is done
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def rewrite(path: str, change: Callable[[Original], bytes | None]) -> bytes | None:
    """Under the writers' lock, read ``path``, call ``change`` and write what it returns.

    ``change`` gets the :class:`Original` (``data`` None if the file does not exist) and
    returns the new bytes, or None to leave the file alone; it may raise to abort, and then
    nothing is written. Returns what ``change`` returned.

    A symlink is followed, as htpasswd does: the file it points to is rewritten (with its
    lock and temp file in that file's folder) and the link stays a link. A hard link cannot
    be kept by a rename: the other names keep the old content (see the README).
    """
    path = os.path.realpath(path)
    with exclusive_lock(path):
        original = read_original(path)
        new = change(original)
        if new is not None and new != original.data:
            replace(path, new, original)
        return new
