"""A clone the Apache user cannot reach (under root's 0700 home) made every protected page a
500 and ``make test`` fail 147 tests without saying why: ``make test`` and ``make demo`` now
stop at once with one line naming the closed folder and the fix."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from devkit.apache import REPO, make_readable

SCRIPT = REPO / "scripts" / "apache-can-read.sh"
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="as another user, Apache runs as that user")


def test_a_closed_folder_stops_with_one_line(tmp_path: Path) -> None:
    make_readable(tmp_path)
    closed = tmp_path / "home"
    (closed / "clone").mkdir(parents=True)
    closed.chmod(0o700)
    target = closed / "clone" / "Makefile"
    target.write_text("")
    result = subprocess.run([str(SCRIPT), str(target)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"authn: Apache's user www-data cannot read {target} ({closed} is closed to it): clone into a "
        f"folder it can reach (such as /srv/authn), or open the way with: chmod o+x {closed}\n"
    )


def test_a_reachable_clone_passes() -> None:
    result = subprocess.run([str(SCRIPT), str(REPO / "Makefile")], capture_output=True, text=True, timeout=30)
    assert (result.returncode, result.stderr) == (0, "")
