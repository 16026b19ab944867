"""Fixtures for the cache tests: honest skips, and throwaway Apaches with a cache folder."""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterator
from pathlib import Path

import pytest

from devkit.apache import Apache, apache_available, run_user
from tests.conftest import need


def give_to_apache_user(path: Path, mode: int) -> None:
    """Make ``path`` belong to the user Apache's children run as."""
    user, _ = run_user()
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    path.chmod(mode)


def protected_site(docroot: Path, options: dict[str, str]) -> str:
    """A config body: the shipped snippets, one protected folder, our options."""
    lines = [
        'Include "${AUTHN_CONF}/authn.conf"',
        f'DocumentRoot "{docroot}"',
        f'<Directory "{docroot}">',
        '    Include "${AUTHN_CONF}/authn-basic.conf"',
        *(f'    PythonOption {k} "{v}"' for k, v in options.items()),
        "    Require valid-user",
        "</Directory>",
    ]
    return "\n".join(lines)


@pytest.fixture
def apaches(tmp_path: Path) -> Iterator[list[Apache]]:
    """Apaches started by a test, stopped afterwards (their error log shown on failure)."""
    need(apache_available())
    started: list[Apache] = []
    yield started
    for apache in started:
        apache.stop()
