"""Machine-wide counters: what every Apache child of this instance counted, summed.

Each process owns one *slot* of a small file mapped by every child of the Apache instance
(``metrics-apache-<parent pid>`` in the lockout's private default folder): a row of 64-bit
counters, one per :data:`NAMES` entry. Counting is one add to this process's own row of
shared memory (no lock, no system call); the status page sums every row.

A slot is claimed once per process, under an ``flock`` of the file, from the slots whose
owner is gone (or never used). The row is *kept*, not zeroed: the new owner counts on top of
what a dead child counted, so the sums never go down while the Apache instance runs (a
graceful restart keeps the parent, and so the file): Prometheus counters stay monotonic.
A full restart starts a new file, which Prometheus reads as a counter reset.

Under the event MPM the threads of one child share its row; an add that races another one
in the same process may be lost (statistics, not accounting; a lock would cost every
request). When the file cannot be used (folder not private, disk full), counting goes to a
row in this process's memory and the page says ``authn_metrics_machine_wide 0``.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import stat
import threading
from collections.abc import Callable

from authn.verdict import Reason

OUTCOMES = ("granted", "refused", "throttled", "unavailable")
#: the counters, in row order (append only: a new name must go at the end)
NAMES: tuple[str, ...] = (
    *(f"answers_{outcome}" for outcome in OUTCOMES),
    *(f"denials_{reason.name.lower()}" for reason in Reason),
    "cache_local_hits",
    "cache_shared_hits",
    "cache_misses",
    "lockout_store_errors",
    "file_reloads",
)
INDEX = {name: i for i, name in enumerate(NAMES)}
ROW = 64  #: counters per row, room for new names without changing the file's layout
SLOTS = 1024  #: processes at once (ServerLimit x children lifetimes overlap: plenty)
_HEADER = 8  #: owner pid of each slot, 8 bytes, before the rows
_MAGIC = b"authnM01"


class Counters:
    """The counters of one Apache instance (see the module docstring)."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._pid = 0
        self._lock = threading.Lock()
        self._view: memoryview | None = None  # the whole file as 64-bit counters
        self._row = 0  # index of this process's first counter in _view
        self.machine_wide = False

    def _attach(self) -> None:
        """Claim a slot for this process (after a fork too); a private row when that fails."""
        with self._lock:
            if self._pid == os.getpid():
                return
            view, row = None, 0
            if self.path is not None:
                with contextlib.suppress(OSError, ValueError):
                    view, row = _claim(self.path)
            self.machine_wide = view is not None
            if view is None:
                view, row = memoryview(bytearray(8 * ROW)).cast("Q"), 0
            self._view, self._row, self._pid = view, row, os.getpid()

    def add(self, name: str, amount: int = 1) -> None:
        """Count ``amount`` under ``name``: one add to shared memory, no system call (a
        fork drops the slot through :func:`os.register_at_fork`; Apache's children are forked
        before their first count, so they claim their own)."""
        view = self._view
        if view is None:
            self._attach()
            view = self._view
            assert view is not None
        view[self._row + INDEX[name]] += amount

    def forget(self) -> None:
        """After a fork: the parent's slot is not ours."""
        self._view, self._pid = None, 0

    def totals(self) -> dict[str, int]:
        """Every counter summed over every process, live or gone, of this instance."""
        if self._view is None:
            self._attach()
        view = self._view
        assert view is not None
        if not self.machine_wide:
            return {name: view[i] for i, name in enumerate(NAMES)}
        first = (_HEADER + 8 * SLOTS) // 8
        sums = [0] * len(NAMES)
        for slot in range(SLOTS):
            base = first + slot * ROW
            for i in range(len(NAMES)):
                sums[i] += view[base + i]
        return dict(zip(NAMES, sums, strict=True))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # another user's process: alive
    return True


def _claim(path: str) -> tuple[memoryview, int]:
    """Map ``path`` (made on first use, private to this user) and claim a slot whose owner
    is gone; returns the file as counters and the index of this process's row."""
    size = _HEADER + 8 * SLOTS + 8 * ROW * SLOTS
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or not stat.S_ISREG(st.st_mode) or st.st_mode & 0o077:
            raise OSError(f"{path} is not a private file of this user")
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if st.st_size < size:
                os.ftruncate(fd, size)
            mapped = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            if mapped[:8] != _MAGIC:
                mapped[:8] = _MAGIC
            view = memoryview(mapped).cast("Q")
            owners = 1  # the owner pids follow the magic
            pid = os.getpid()
            slot = next((s for s in range(SLOTS) if view[owners + s] in (0, pid)), None)
            if slot is None:
                slot = next((s for s in range(SLOTS) if not _alive(int(view[owners + s]))), None)
            if slot is None:
                raise ValueError("every slot is taken")
            view[owners + slot] = pid
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
    return view, (_HEADER + 8 * SLOTS) // 8 + slot * ROW


def _default_path() -> str | None:
    from authn.lockout.stores import default_folder  # the vetted private folder

    folder = default_folder()
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        st = os.stat(folder)
    except OSError:
        return None
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        return None
    return os.path.join(folder, f"metrics-apache-{os.getppid()}")


COUNTERS = Counters(None)


def _add(name: str, amount: int = 1) -> None:
    COUNTERS.add(name, amount)


#: ``add(name, amount=1)``: count under ``name`` (:meth:`Counters.add` of this process's
#: counters; the bound method itself once :func:`enable` made them machine-wide: one Python
#: call per count on the request path, not two)
add: Callable[..., None] = _add


def enable() -> None:
    """Count machine-wide from now on (called by the mod_python adapter, in Apache only)."""
    global COUNTERS, add
    if COUNTERS.path is None:
        COUNTERS = Counters(_default_path())
        add = COUNTERS.add


os.register_at_fork(after_in_child=lambda: COUNTERS.forget())
