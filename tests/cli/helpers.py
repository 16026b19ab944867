"""Running ``authn`` and the real ``htpasswd`` side by side."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

AUTHN = [sys.executable, "-m", "authn.cli.main"]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    return e


def authn(
    *args: str | Path, input: bytes | None = None, check: bool = False
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [*AUTHN, *map(str, args)],
        input=input if input is not None else b"",
        capture_output=True,
        env=env(),
        check=check,
        timeout=120,
        start_new_session=True,  # no controlling terminal: prompts read stdin, as in scripts
    )


def htpasswd(
    program: str, *args: str | Path, input: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [program, *map(str, args)],
        input=input if input is not None else b"",
        capture_output=True,
        timeout=60,
        start_new_session=True,
    )


def verifies(program: str, path: Path, user: str, password: str) -> bool:
    """True when the real ``htpasswd -v`` accepts ``password`` for ``user`` in ``path``."""
    return htpasswd(program, "-vb", path, user, password).returncode == 0
