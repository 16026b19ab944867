"""The checks of tests/conftest.py: a session whose tests leave a server running, an entry in
/tmp or a write under a system folder fails and says which."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devkit.apache import REPO, apache_available
from devkit.processes import kill_all, processes_mentioning
from tests.conftest import need


@pytest.fixture
def work(scratch: Path) -> Iterator[Path]:
    need(apache_available())
    yield scratch
    left = processes_mentioning(scratch)
    kill_all([pid for pid, _ in left])
    assert not left, f"processes left behind: {left}"


LEAKY_TESTS = """
import os
from pathlib import Path

from devkit.apache import Apache


def test_leaves_an_apache(tmp_path):
    Apache(tmp_path / "apache", "").start()  # never stopped


def test_leaves_a_tmp_entry():
    Path(os.environ["LEAK_TMP"]).mkdir()


def test_writes_a_system_folder():
    Path(os.environ["LEAK_SYSTEM"]).mkdir()
"""


def test_the_session_end_checks_catch_leaks(work: Path) -> None:
    """A session whose tests leave an Apache running, a /tmp entry and a write under a system
    folder fails and names all three; the Apache is killed, the write refused."""
    (work / "inner").mkdir()
    (work / "inner" / "test_leaky.py").write_text(LEAKY_TESTS)
    leak_tmp = Path("/tmp") / f"authn-leak-check-{uuid.uuid4().hex}"
    leak_system = Path("/var/cache") / f"authn-leak-check-{uuid.uuid4().hex}"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "LEAK_TMP": str(leak_tmp),
        "LEAK_SYSTEM": str(leak_system),
    }
    try:
        got = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider",
             "--basetemp", str(work / "base"), "-q", "test_leaky.py"],
            cwd=work / "inner",
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )  # fmt: skip
    finally:
        shutil.rmtree(leak_tmp, ignore_errors=True)
        if leak_system.exists():  # the guard failed; clean up outside this process's guard
            subprocess.run(["rmdir", str(leak_system)], check=False)
    out = got.stdout + got.stderr
    print(out)  # shown when this test fails
    assert got.returncode != 0, out
    assert "servers still running at the end of the session (now killed)" in out, out
    assert "apache2" in out
    assert "new in /tmp since the session started" in out and leak_tmp.name in out
    assert "tried to write under a system folder (refused)" in out and str(leak_system) in out
    assert not leak_system.exists()
