"""The sign-in tests use the servers of the LDAP and lockout tests."""

from tests.ldap.conftest import service_password_file, slapd
from tests.lockout.conftest import redis_server

__all__ = ["redis_server", "service_password_file", "slapd"]
