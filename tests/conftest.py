"""Shared fixtures: real servers, honest skips.

A test that needs a server it cannot find skips locally, but fails under ``CI=true``: a green
CI must never hide a missing install step.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness.apache import Apache, apache_available, make_readable

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

    yield start
    failed = getattr(request.node, "rep_call", None)
    for server in started:
        server.stop()
        if failed is not None and failed.failed:
            print(f"--- error_log of Apache on port {server.port} ---\n{server.error_log()[-20000:]}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    rep = yield
    setattr(item, "rep_" + rep.when, rep)  # type: ignore[attr-defined]
    return rep
