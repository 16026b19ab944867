"""Shared fixtures: real servers, honest skips, and a run that leaves nothing behind.

A test that needs a server it cannot find skips locally, but fails under ``CI=true``: a green
CI must never hide a missing install step.

Everything a run writes lives under pytest's temp folder: ``TMPDIR`` points there for the
whole session (and for every program the tests start), each Apache keeps its temp files and
credential cache in its own folder. Three checks hold the suite to it:

* a test that writes (or tries to) under a system folder (/etc, /var, /usr, ...) is stopped
  (the write fails with PermissionError) and fails, naming the path;
* at the end, a server still running from the session's folder (an Apache, slapd, redis, the
  demo's Apache) is killed and the session fails, naming it;
* at the end, an entry that appeared in /tmp during the session fails it (pytest's own folder
  aside). Under ``CI=true`` any new entry fails; elsewhere other programs write /tmp at the
  same time, so only names authn and its test servers use fail, and the others are listed at
  the end of the run.

Run as root, the tests' temp folder lives in ``/tmp/authn-tests-0`` rather than pytest's
``/tmp/pytest-of-root``: Apache's children (www-data) must reach it, and every pytest session
that starts resets ``pytest-of-root`` to mode 0700, which broke the Apaches of any session
running at the same time (403, "search permissions are missing").
"""

from __future__ import annotations

import atexit
import errno
import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devkit.apache import REPO, Apache, apache_available, make_readable
from devkit.processes import kill_all, processes_mentioning

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need(reason: str | None) -> None:
    """Skip (locally) or fail (under CI=true) when ``reason`` says something is missing."""
    if reason is None:
        return
    if IN_CI:
        pytest.fail(f"required for CI: {reason}")
    pytest.skip(reason)


def need_program(name: str, package: str) -> str:
    found = shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin:" + os.environ.get("PATH", ""))
    need(None if found else f"{name} is not installed (apt-get install {package})")
    assert found is not None
    return found


SYSTEM_FOLDERS = ("/etc/", "/var/", "/usr/", "/opt/", "/srv/", "/boot/", "/bin/", "/sbin/", "/lib/")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_WRITE_EVENTS = {
    "os.mkdir", "os.rename", "os.remove", "os.rmdir", "os.symlink", "os.link", "os.chmod",
    "os.chown", "os.truncate", "os.utime", "shutil.rmtree", "shutil.copyfile", "sqlite3.connect",
}  # fmt: skip
_SECOND_IS_WRITTEN = {"os.rename", "os.link", "os.symlink", "shutil.copyfile"}  # (src, dst, ...)
#: where writes are fine even under a system folder: the checkout (cloned to /opt/authn, say),
#: the venv, pytest's temp folder (set at session start)
allowed: list[str] = [str(REPO) + "/"] + ([sys.prefix + "/"] if sys.prefix != sys.base_prefix else [])
#: (test, event, path) of every write to a system folder the guard stopped
system_writes: list[tuple[str, str, str]] = []
_guard_on = False


def _system_path(arg: object) -> str | None:
    if not isinstance(arg, (str, bytes, os.PathLike)):
        return None
    path = os.fsdecode(arg)
    if path in ("", ":memory:") or path.startswith("file:"):  # SQLite's names that are no path
        return None
    path = os.path.abspath(path)
    if not path.startswith(SYSTEM_FOLDERS) or path.startswith(tuple(allowed)):
        return None
    if "/__pycache__/" in path:  # Python's own bytecode
        return None
    return path


def _guard(event: str, args: tuple[object, ...]) -> None:
    """Audit hook: refuse writes under a system folder while the session runs."""
    if not _guard_on:
        return
    if event == "open":
        path, mode, flags = args
        writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & _WRITE_FLAGS
        )
        paths = [path] if writes else []
    elif event in _WRITE_EVENTS:
        paths = [args[1] if event in _SECOND_IS_WRITTEN else args[0]]
    else:
        return
    for arg in paths:
        path = _system_path(arg)
        if path is not None:
            test = os.environ.get("PYTEST_CURRENT_TEST", "(no test)").rsplit(" ", 1)[0]
            system_writes.append((test, event, path))
            raise PermissionError(errno.EACCES, "the tests must not write under a system folder", path)


sys.addaudithook(_guard)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """As root, a numbered temp folder per session under a root folder that stays
    traversable (see the module docstring); pytest's own numbering, locking and clean-up of
    old sessions (the last 3 are kept)."""
    if os.geteuid() != 0 or config.option.basetemp or os.environ.get("PYTEST_DEBUG_TEMPROOT"):
        return
    from _pytest.pathlib import make_numbered_dir_with_cleanup

    root = Path(tempfile.gettempdir()) / "authn-tests-0"
    try:
        root.mkdir(mode=0o755, exist_ok=True)
        st = os.lstat(root)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o022:
            return  # not ours: pytest's default then
        numbered = make_numbered_dir_with_cleanup(
            root=root, prefix="pytest-", mode=0o755, keep=3, lock_timeout=3 * 86400, register=atexit.register
        )
    except (OSError, TypeError):  # TypeError: another pytest's private API; keep its default
        return
    # pytest empties and remakes a given basetemp: one level down, the lock file stays
    config.option.basetemp = str(numbered / "t")


def _tmp_entries() -> set[str]:
    try:
        return set(os.listdir("/tmp"))
    except OSError:
        return set()


@pytest.fixture(scope="session", autouse=True)
def _session_leaves_nothing_behind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """TMPDIR inside pytest's temp folder for the session; the end-of-session checks."""
    global _guard_on
    before = _tmp_entries()
    basetemp = tmp_path_factory.getbasetemp().resolve()
    allowed.append(str(basetemp) + "/")
    session_tmp = tmp_path_factory.mktemp("TMPDIR", numbered=False)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TMPDIR", str(session_tmp))
        mp.setattr(tempfile, "tempdir", None)  # gettempdir() reads TMPDIR again
        _guard_on = True
        try:
            yield
        finally:
            _guard_on = False
    problems = []
    strays = processes_mentioning(basetemp)
    if strays:
        kill_all([pid for pid, _ in strays])
        problems.append("servers still running at the end of the session (now killed):")
        problems += [f"  pid {pid}: {cmd}" for pid, cmd in strays]
    ours = {basetemp.relative_to("/tmp").parts[0]} if basetemp.is_relative_to("/tmp") else set()
    new = sorted(_tmp_entries() - before - ours)
    leaked = [name for name in new if IN_CI or _looks_like_ours(name)]
    if leaked:
        problems.append("new in /tmp since the session started: " + ", ".join(leaked))
    others = sorted(set(new) - set(leaked))
    if others:
        notes.append("new in /tmp during the session, probably from other programs: " + ", ".join(others))
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


#: what authn and the test servers name their /tmp entries (the demo's folder, the default
#: lockout folder, slapdtest's folder)
_OUR_NAMES = re.compile(r"authn-.*|python-ldap-test-.*")
#: said at the end of the run (pytest_terminal_summary)
notes: list[str] = []


def _looks_like_ours(name: str) -> bool:
    return _OUR_NAMES.fullmatch(name) is not None


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in notes:
        terminalreporter.write_line(line, yellow=True)


@pytest.fixture(autouse=True)
def _no_system_writes() -> Iterator[None]:
    """Fail a test that tried to write under a system folder (the guard refused it)."""
    start = len(system_writes)
    yield
    tried = system_writes[start:]
    if tried:
        lines = [f"  {event} {path}" for _, event, path in tried]
        pytest.fail(
            "this test tried to write under a system folder (refused); use tmp_path, e.g. "
            "authn.cache.dir or authn.lockout.dir in tmp_path:\n" + "\n".join(lines),
            pytrace=False,
        )


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """A temp folder the Apache run user (www-data when we are root) can read."""
    make_readable(tmp_path)
    return tmp_path


@pytest.fixture
def start_apache(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Apache]]:
    """Factory: ``start_apache(body, mpm=..., modules=...)`` starts an Apache, stopped after
    the test. Its error log is printed when the test fails."""
    need(apache_available())
    started: list[Apache] = []

    def start(body: str, **kwargs: object) -> Apache:
        workdir = tmp_path_factory.mktemp("apache")
        server = Apache(workdir, body, **kwargs)  # type: ignore[arg-type]
        started.append(server)
        return server.start()

    try:
        yield start
    finally:
        failed = getattr(request.node, "rep_call", None)
        for server in started:
            try:
                server.stop()
            finally:
                if failed is not None and failed.failed:
                    print(f"--- error_log of Apache on port {server.port} ---\n{server.error_log()[-20000:]}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    rep = yield
    setattr(item, "rep_" + rep.when, rep)  # type: ignore[attr-defined]
    return rep
