"""A file that is parsed once per change and reloaded without an Apache restart.

:class:`WatchedFile` keeps the parsed value of a file (a password file, a group file) in
memory. At most once per ``interval`` seconds (default 0.5) it looks at the file's identity (device,
inode, size, modification and change time); only when that changed is the file read and parsed
again. The change time moves with ``chmod``/``chown`` too, so a file made unreadable to the
Apache user fails closed (500) within a second, as native Apache does, instead of serving
its last parsed version.
The new value replaces the old one only after it was parsed completely from a file that did
not change while it was read, so a reader never sees half of a file:

* a file replaced with ``rename``/``os.replace`` (what ``authn passwd`` does) is read from
  one inode, old or new, never a mix;
* a file rewritten in place (an editor, ``cat >``, ``htpasswd`` copying its temp file) is
  only taken once it has not changed for :data:`SETTLE_SECONDS`; until then the previous
  value keeps answering.

Errors: a file that cannot be read raises :class:`authn.verdict.SourceUnavailable` naming
the path and the OS error, every time it is asked for (fail closed), until it can be read.
The server only reads; it never writes the file.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from authn.verdict import SourceUnavailable

T = TypeVar("T")

SETTLE_SECONDS = 0.2
#: How often a process looks at the file's identity (one stat() call). With the settle time
#: this makes an edit visible to every Apache child within 0.7 s.
CHECK_INTERVAL = 0.5
Generation = tuple[int, int, int, int, int]


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
                self._error = None
                self._next_check = now + self._interval
                return old
            if old is not None and time.time() - st.st_mtime < SETTLE_SECONDS:
                # Being written right now: keep the old value, look again shortly.
                self._next_check = now + SETTLE_SECONDS / 4
                return old
            loaded = self._read()
        except OSError as exc:
            self._error = SourceUnavailable(
                self._source,
                f"cannot read {self._what} {self.path}: {exc.strerror or exc} "
                f"(errno {exc.errno}); check that it exists and that the Apache user can read it",
            )
            self._next_check = now + self._interval
            raise self._error from None
        if loaded is None:  # changed while we read it: try again soon, keep the old value
            self._next_check = now + SETTLE_SECONDS / 4
            if old is None:
                raise SourceUnavailable(self._source, f"{self._what} {self.path} keeps changing")
            return old
        self._loaded, self._error = loaded, None
        self._next_check = now + self._interval
        return loaded

    def _read(self) -> Loaded[T] | None:
        """The parsed file, or None when the inode we read was modified while we read it.

        A file replaced by rename while we read it is fine: we read one complete inode (the
        next check sees the new one). Only an in-place write during the read is refused."""
        started = time.perf_counter()
        for _ in range(3):
            with open(self.path, "rb") as fh:
                before = _generation(os.fstat(fh.fileno()))
                data = fh.read()
                after = _generation(os.fstat(fh.fileno()))
            if after == before and len(data) == before[2]:
                value = self._parse(data, self.path)
                return Loaded(value, before, time.time(), time.perf_counter() - started)
        return None
