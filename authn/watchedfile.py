"""A file that is parsed once per change and reloaded without an Apache restart.

:class:`WatchedFile` keeps the parsed value of a file (a password file, a group file) in
memory. At most once per ``interval`` seconds (default 0.5) it looks at the file's identity (device,
inode, size, modification and change time); only when that changed is the file read and parsed
again. The change time moves with ``chmod``/``chown`` too, so a file made unreadable to the
Apache user fails closed (500) within a second, as native Apache does, instead of serving
its last parsed version.

When the identity changed, the file is opened at once: a file that cannot be opened (made
unreadable, removed) fails closed on that very look. The new value replaces the old one
only after it was parsed completely from a file that did not change while it was read, and
that had *settled*, so a reader never sees half of a file:

* a file replaced with ``rename``/``os.replace`` (what ``authn passwd`` does) is read from
  one inode, old or new, never a mix;
* a file rewritten in place (an editor, ``cat >``, ``htpasswd`` copying its temp file) is
  only taken once nothing has written it for :data:`SETTLE_SECONDS`; until then the
  previous value keeps answering (or the previous error, for a file that could not be read).

"Settled" means: its modification or change time lies at least :data:`SETTLE_SECONDS` in
the past (every write sets both to now; ``cp -p``, ``tar`` and ``rsync -t`` set the
modification time only once the content is written), or this process has seen the same
identity, unchanged, for :data:`SETTLE_SECONDS` of monotonic time. The second rule is what
takes a file whose timestamps lie in the future (copied from a host whose clock is ahead,
or on a file server whose clock is): such a file is taken within a second like any other,
never ignored until its timestamp comes.

The first look of a process reads the file at once: there is no previous answer to give
meanwhile.

Errors: a file that cannot be read raises :class:`authn.errors.SourceUnavailable` naming
the path and the OS error, every time it is asked for (fail closed), until it can be read.
The server only reads; it never writes the file.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO, Generic, TypeVar

from authn import metrics
from authn.errors import SourceUnavailable

T = TypeVar("T")

SETTLE_SECONDS = 0.2
#: How often a process looks at the file's identity (one stat() call). With the settle time
#: this makes an edit visible to every Apache child within 0.7 s.
CHECK_INTERVAL = 0.5
Generation = tuple[int, int, int, int, int]
#: the largest file read (a 100,000-user bcrypt file is 7 MB); a larger one fails closed
MAX_BYTES = 256 * 1024 * 1024


def _open_regular(path: str) -> BinaryIO:
    """``path`` opened for reading without ever blocking: O_NONBLOCK, so a FIFO put in the
    file's place cannot hang the Apache child in open(); then anything but a regular file
    (a FIFO, a device, a folder) is refused with an OSError, so it fails closed (500)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


@dataclass(frozen=True, slots=True)
class Loaded(Generic[T]):
    """One parsed version of the file."""

    value: T
    generation: Generation  #: (device, inode, size, mtime, ctime in ns) of what was parsed
    loaded_at: float  #: wall-clock time of the load
    load_seconds: float  #: how long reading and parsing took


def _generation(st: os.stat_result) -> Generation:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class WatchedFile(Generic[T]):
    """The parsed value of ``path``, reloaded when the file changes.

    ``parse(data, path)`` turns the file's bytes into the value; it must not raise for bad
    content (it skips what it cannot use). ``what`` names the file in error messages
    ("password file"). ``source`` names the credential source for :class:`SourceUnavailable`.
    """

    def __init__(
        self,
        path: str,
        parse: Callable[[bytes, str], T],
        *,
        what: str,
        source: str,
        interval: float = CHECK_INTERVAL,
    ) -> None:
        self.path = path
        self._parse = parse
        self._what = what
        self._source = source
        self._interval = interval
        self._lock = threading.Lock()
        self._loaded: Loaded[T] | None = None
        self._error: SourceUnavailable | None = None
        self._next_check = 0.0
        #: a changed identity this process saw, and the monotonic time it first saw it
        self._pending: tuple[Generation, float] | None = None

    def current(self) -> Loaded[T]:
        """The value for the file as it is now (at most ``interval`` seconds old)."""
        loaded, error = self._loaded, self._error
        if time.monotonic() < self._next_check:
            if error is not None:
                raise error
            if loaded is not None:
                return loaded
        # One thread refreshes; the others keep answering from the value they have.
        if not self._lock.acquire(blocking=loaded is None and error is None):
            if error is not None:
                raise error
            assert loaded is not None
            return loaded
        try:
            return self._refresh()
        finally:
            self._lock.release()

    def _refresh(self) -> Loaded[T]:
        now = time.monotonic()
        old = self._loaded
        try:
            st = os.stat(self.path)
            if old is not None and _generation(st) == old.generation:
                self._error, self._pending = None, None
                self._next_check = now + self._interval
                return old
            first_look = old is None and self._error is None
            for _ in range(3 if first_look else 1):
                # Changed (or never loaded): open it now, so that a file made unreadable
                # fails closed on this very look, before any wait for it to settle.
                with _open_regular(self.path) as fh:
                    st = os.fstat(fh.fileno())
                    if not first_look and not self._settled(st, now):
                        # Perhaps being written right now: keep the old answer, look again soon.
                        self._next_check = now + SETTLE_SECONDS / 4
                        if self._error is not None:
                            raise self._error
                        assert old is not None
                        return old
                    loaded = self._read(fh, _generation(st))
                if loaded is not None:
                    break
        except OSError as exc:
            self._pending = None
            self._error = SourceUnavailable(
                self._source,
                f"cannot read {self._what} {self.path}: {exc.strerror or exc} "
                f"(errno {exc.errno}); check that it exists and that the Apache user can read it",
            )
            self._next_check = now + self._interval
            raise self._error from None
        if loaded is None:  # changed while we read it: try again soon, keep the old answer
            self._next_check = now + SETTLE_SECONDS / 4
            if self._error is not None:
                raise self._error
            if old is None:
                raise SourceUnavailable(self._source, f"{self._what} {self.path} keeps changing")
            return old
        self._loaded, self._error, self._pending = loaded, None, None
        self._next_check = now + self._interval
        metrics.add("file_reloads")
        return loaded

    def _settled(self, st: os.stat_result, now: float) -> bool:
        """True when nothing can be writing the file any more (see the module docstring):
        a timestamp safely in the past, or the same identity seen unchanged for
        :data:`SETTLE_SECONDS` of monotonic time, whatever the timestamps say."""
        generation = _generation(st)
        if self._pending is None or self._pending[0] != generation:
            self._pending = (generation, now)
        if now - self._pending[1] >= SETTLE_SECONDS:
            return True
        settle_ns = int(SETTLE_SECONDS * 1e9)
        return min(st.st_mtime_ns, st.st_ctime_ns) <= time.time_ns() - settle_ns

    def _read(self, fh: BinaryIO, generation: Generation) -> Loaded[T] | None:
        """The parsed file, or None when the inode was modified while we read it.

        A file replaced by rename while we read it is fine: we read one complete inode (the
        next check sees the new one). Only an in-place write during the read is refused."""
        started = time.perf_counter()
        data = fh.read(MAX_BYTES + 1)
        if len(data) > MAX_BYTES:
            raise OSError(errno.EFBIG, f"larger than {MAX_BYTES // (1024 * 1024)} MB")
        after = _generation(os.fstat(fh.fileno()))
        if after != generation or len(data) != generation[2]:
            return None
        value = self._parse(data, self.path)
        return Loaded(value, generation, time.time(), time.perf_counter() - started)
