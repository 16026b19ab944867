"""Fixtures for the LDAP tests: one throwaway slapd per session, and Directory objects on it.

A missing slapd skips these tests locally and fails them under CI=true.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from authn.settings import parse_settings
from authn.sources.ldap.directory import Directory
from devkit.slapd import SERVICE_DN, SERVICE_PASSWORD, Slapd, slapd_available
from tests.conftest import need


@pytest.fixture(scope="session")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    need(slapd_available())
    server = Slapd(tmp_path_factory.mktemp("slapd"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def service_password_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("secret") / "bind-password"
    path.write_text(SERVICE_PASSWORD + "\n")
    path.chmod(0o644)
    return path


@pytest.fixture
def make_directory(slapd: Slapd, service_password_file: Path) -> Iterator[object]:
    """make_directory(url=..., **options) -> Directory, closed after the test."""
    made: list[Directory] = []

    def make(url: str | None = None, service: bool = True, **options: str) -> Directory:
        pairs = {
            "authn.source": "ldap",
            "authn.ldap.url": url or f"{slapd.ldap_url}/dc=example,dc=org?uid,cn,mail?sub",
        }
        if service:
            pairs["authn.ldap.bind_dn"] = SERVICE_DN
            pairs["authn.ldap.bind_password_file"] = str(service_password_file)
        pairs.update({f"authn.ldap.{k}": v for k, v in options.items()})
        directory = Directory(parse_settings(pairs.items()).ldap)
        made.append(directory)
        return directory

    yield make
    for directory in made:
        directory.close()
