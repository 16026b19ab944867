from __future__ import annotations

import pytest

from tests.conftest import need_program


@pytest.fixture(scope="session")
def real_htpasswd() -> str:
    """The path of Apache's own htpasswd (apache2-utils)."""
    return need_program("htpasswd", "apache2-utils")
