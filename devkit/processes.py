"""Servers that cannot outlive the code that started them, and a way to find those that did.

* :data:`DIE_WITH_PARENT` prefixes a server's command line so that the kernel sends it
  SIGTERM when the process that started it dies, even by SIGKILL (``setpriv --pdeathsig``,
  util-linux). Apache lives in its own session (a terminal's Ctrl-C must not reach it before
  we stop it in order), so nothing else would stop it when a test run or the demo is killed.
  The signal follows the *thread* that started the server: start servers from the main
  thread.
* :func:`stop_group` stops a server and everything left in its process group.
* :func:`processes_mentioning` lists the processes whose command line mentions a folder: every
  server the tests start has its config or data under the session's temp folder, so this
  finds the ones still running at the end.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

_SETPRIV = shutil.which("setpriv", path="/usr/bin:/bin:/usr/sbin:/sbin")
#: the command prefix that makes a server die with its starter; empty when setpriv is missing
DIE_WITH_PARENT: list[str] = [_SETPRIV, "--pdeathsig", "TERM"] if _SETPRIV else []


def group_alive(pgid: int) -> bool:
    """True while any process is left in process group ``pgid``."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_group(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM to ``proc`` (the leader of its own process group), wait, then SIGKILL to
    whatever is left in the group: a child that lost its parent must not linger."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    for sig in (signal.SIGTERM, signal.SIGKILL):  # children whose parent is gone
        if not group_alive(proc.pid):
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        deadline = time.monotonic() + 5
        while group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)


def _ancestors() -> set[int]:
    pids = set()
    pid = os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rpartition(")")[2].split()[1])
    return pids


def processes_mentioning(folder: Path) -> list[tuple[int, str]]:
    """(pid, command line) of every process whose command line mentions ``folder``,
    except this process and its ancestors (``pytest --basetemp=...`` mentions it too)."""
    needle = os.fsencode(str(folder))
    mine = _ancestors()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in mine:
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline:
            found.append((int(entry), cmdline.replace(b"\0", b" ").decode(errors="replace").strip()))
    return found


def kill_all(pids: list[int]) -> None:
    """SIGKILL each process (leftovers only: they had their chance to stop cleanly)."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
