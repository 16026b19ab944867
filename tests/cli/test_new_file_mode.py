"""New password and group files are readable by the Apache group only, whatever the umask
(htpasswd leaves 0644 under the usual umask: every local user reads the hashes)."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from authn.cli.atomicfile import apache_group
from devkit.apache import make_readable
from tests.cli.helpers import AUTHN, authn, env

ROOT = os.geteuid() == 0


def _with_umask(
    mask: int, run: Callable[[], subprocess.CompletedProcess[bytes]]
) -> subprocess.CompletedProcess[bytes]:
    old = os.umask(mask)
    try:
        return run()
    finally:
        os.umask(old)


def _expected_gid() -> int:
    group = apache_group()
    if group is not None and (ROOT or group.gr_gid in os.getgroups()):
        return group.gr_gid
    return os.getegid()


@pytest.mark.parametrize("mask", [0o000, 0o022, 0o077])
@pytest.mark.parametrize("kind", ["passwd", "group", "import"])
def test_new_file_is_0640_for_the_apache_group(tmp_path: Path, mask: int, kind: str) -> None:
    path = tmp_path / kind
    commands = {
        "passwd": lambda: authn("passwd", "-cbB", "-C", "4", path, "alice", "pw"),
        "group": lambda: authn("group", "add", "-c", path, "admins", "alice"),
        "import": lambda: authn("import", "-c", "-C", "4", path, input=b"alice,pw\n"),
    }
    result = _with_umask(mask, commands[kind])
    assert result.returncode == 0, result.stderr
    st = path.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o640, _expected_gid())
    assert b"note:" not in result.stderr


def test_existing_file_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "users"
    assert authn("passwd", "-cbB", "-C", "4", path, "alice", "pw").returncode == 0
    path.chmod(0o600)
    assert authn("passwd", "-bB", "-C", "4", path, "bob", "pw").returncode == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.skipif(
    not ROOT or apache_group() is None, reason="needs root (to run as another user) and an Apache group"
)
def test_a_user_outside_the_apache_group_is_told_what_to_run(tmp_path: Path) -> None:
    group = apache_group()
    assert group is not None
    folder = tmp_path / "nobody"
    folder.mkdir()
    os.chown(folder, 65534, 65534)  # nobody:nogroup, not in the Apache group
    make_readable(tmp_path)
    path = folder / "users"
    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *AUTHN, "passwd", "-cbB", "-C", "4",
         str(path), "alice", "pw"],
        capture_output=True, env=env(), timeout=60, cwd="/",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    st = path.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o640, 65534)
    assert (
        f"note: {path} is readable by its owner and group only, and Apache's group "
        f"{group.gr_name} is not its group; as root: chgrp {group.gr_name} {path}"
    ) in result.stderr.decode().splitlines()
