"""Fixtures for the lockout tests: a real redis-server on a free port (devkit.redis)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

from devkit.redis import RedisServer
from tests.conftest import need, need_program


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    need(None if importlib.util.find_spec("redis") else "pip install redis (authn[redis])")
    server = RedisServer(need_program("redis-server", "redis-server"), tmp_path)
    server.start()
    yield server
    server.stop()
