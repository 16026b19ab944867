"""LDAP connections kept warm per process: opening with failover, TLS, timeouts, and a pool.

A :class:`Slot` is what one request borrows from a :class:`Pool`: a *service* connection
(bound as ``authn.ldap.bind_dn`` or anonymous) used for every search, and a separate *bind*
connection used only for users' binds. The service connection is therefore never left
bound as a user, and the next search needs no rebind.

Connections are opened lazily, once per process (a forked child never uses its parent's),
and reused. Every connection has a network timeout and an operation timeout. When an
operation on a reused connection fails because the server went away (restart, idle
timeout, failover), the connection is dropped and the operation is retried once on a fresh
one; when no host answers, :class:`DirectoryDown` says which host failed and why.

Hosts are tried in the order of the URL. TLS (``ldaps://`` or StartTLS) always verifies
the server's certificate and name; ``ca_file`` names the CA to trust.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import ldap

from authn.errors import DirectoryDown, UnreadableFile, probe_file
from authn.settings import LdapSettings

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class HostState:
    """The last attempt of this process to open a connection to one directory host."""

    up: bool
    at: float  #: wall-clock time of the attempt
    why: str = ""  #: why it failed (empty when up)


#: uri -> the last opening attempt in this process (read by the status page)
HOST_STATE: dict[str, HostState] = {}

#: python-ldap errors that mean "this connection or server is gone", not "your request is bad"
CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    ldap.SERVER_DOWN,
    ldap.CONNECT_ERROR,
    ldap.TIMEOUT,
    ldap.UNAVAILABLE,
    ldap.BUSY,
)


@dataclass(frozen=True, slots=True)
class ConnectionConfig:
    """How to reach the directory: the ``authn.ldap.*`` settings, and the service password
    read from ``authn.ldap.bind_password_file``."""

    settings: LdapSettings
    bind_password: bytes | None = None

    @property
    def uris(self) -> tuple[str, ...]:
        return self.settings.url.uris if self.settings.url is not None else ()

    @property
    def starttls(self) -> bool:
        return self.settings.starttls

    @property
    def ca_file(self) -> str | None:
        return self.settings.ca_file

    @property
    def bind_dn(self) -> str | None:
        return self.settings.bind_dn

    @property
    def timeout(self) -> float:
        return self.settings.timeout


def describe(exc: BaseException) -> str:
    """A python-ldap error as one short line: its description and diagnostic text."""
    if isinstance(exc, ldap.LDAPError) and exc.args and isinstance(exc.args[0], dict):
        info = exc.args[0]
        desc = str(info.get("desc", type(exc).__name__))
        extra = str(info.get("info", "") or "")
        text = f"{desc}: {extra}" if extra else desc
        return text
    return f"{type(exc).__name__}: {exc}"


def open_connection(uri: str, config: ConnectionConfig) -> Any:
    """Open one connection to ``uri`` and bind it as the service account (or anonymous).

    Raises python-ldap errors (the caller tries the next host), UnreadableFile when the CA
    file cannot be loaded.
    """
    conn = ldap.initialize(uri)
    conn.set_option(ldap.OPT_PROTOCOL_VERSION, 3)
    conn.set_option(ldap.OPT_REFERRALS, 0)  # never chase referrals (Active Directory)
    conn.set_option(ldap.OPT_NETWORK_TIMEOUT, config.timeout)
    conn.set_option(ldap.OPT_TIMEOUT, config.timeout)
    if uri.startswith("ldaps://") or config.starttls:
        conn.set_option(ldap.OPT_X_TLS_REQUIRE_CERT, ldap.OPT_X_TLS_DEMAND)
        if config.ca_file:
            conn.set_option(ldap.OPT_X_TLS_CACERTFILE, config.ca_file)
        # libldap builds the TLS context from the options above only when asked to; it
        # answers a CA file it cannot load with a bare "ValueError: option error"
        try:
            conn.set_option(ldap.OPT_X_TLS_NEWCTX, 0)
        except ValueError:
            if config.ca_file:
                probe_file("authn.ldap.ca_file", config.ca_file)  # says why, when it can
                raise UnreadableFile(
                    "authn.ldap.ca_file", config.ca_file, "not a PEM CA certificate"
                ) from None
            raise
    if config.starttls:
        conn.start_tls_s()
    if config.bind_dn is not None:
        conn.simple_bind_s(config.bind_dn, config.bind_password or b"")
    else:
        conn.simple_bind_s("", "")  # anonymous; also opens the connection now
    return conn


def tcp_reachable(uri: str, timeout: float) -> bool:
    """True when the host and port of ``uri`` accept a TCP connection."""
    parts = urlsplit(uri)
    port = parts.port or (636 if parts.scheme == "ldaps" else 389)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout):
            return True
    except OSError:
        return False


def close_quietly(conn: Any) -> None:
    try:
        conn.unbind_ext_s()
    except Exception:  # noqa: S110 - the connection is being discarded anyway
        pass


class _Connection:
    """One lazily opened connection that reopens itself once when the server went away."""

    def __init__(self, slot: Slot) -> None:
        self.slot = slot
        self.conn: Any = None
        self.uri = ""

    def run(self, op: Callable[[Any], T]) -> T:
        if self.conn is not None:
            try:
                return op(self.conn)
            except CONNECTION_ERRORS:
                self.close()  # dropped or restarted server: reopen below
        self.conn, self.uri = self.slot.open_first()
        try:
            return op(self.conn)
        except CONNECTION_ERRORS as exc:
            uri = self.uri
            self.close()
            raise DirectoryDown(f"{uri}: {describe(exc)}") from exc

    def close(self) -> None:
        if self.conn is not None:
            close_quietly(self.conn)
        self.conn = None


class Slot:
    """One borrowed pair of connections; see the module docstring."""

    def __init__(self, config: ConnectionConfig) -> None:
        self.config = config
        self._service = _Connection(self)
        self._binder = _Connection(self)

    @property
    def service(self) -> Any:
        """The service connection (None until first used)."""
        return self._service.conn

    @property
    def binder(self) -> Any:
        """The connection for users' binds (None until first used)."""
        return self._binder.conn

    def open_first(self) -> tuple[Any, str]:
        """A new connection to the first host that answers, and its URI; else DirectoryDown."""
        # Both connections start bound as the service account (or anonymous): the bind
        # makes libldap connect now, so a host that is down is found here and skipped.
        failures = []
        for uri in self.config.uris:
            try:
                conn = open_connection(uri, self.config)
            except CONNECTION_ERRORS as exc:
                why = self._why(uri, exc)
            except ldap.INVALID_CREDENTIALS as exc:
                why = (
                    f"service bind as authn.ldap.bind_dn refused ({describe(exc)}); "
                    "check authn.ldap.bind_dn and authn.ldap.bind_password_file"
                )
            else:
                HOST_STATE[uri] = HostState(True, time.time())
                return conn, uri
            HOST_STATE[uri] = HostState(False, time.time(), why)
            failures.append(f"{uri}: {why}")
        raise DirectoryDown("; ".join(failures))

    def _why(self, uri: str, exc: BaseException) -> str:
        """Why opening ``uri`` failed. libldap with GnuTLS reports a refused certificate as
        "(unknown error code)": when TLS was in play and the port does accept TCP, the TLS
        handshake is what failed, and we say so."""
        text = describe(exc)
        tls = uri.startswith("ldaps://") or self.config.starttls
        if not tls or not tcp_reachable(uri, self.config.timeout):
            return text
        ca = self.config.ca_file or "the system's CAs"
        return (
            f"TLS handshake failed ({text}): the server's certificate is not signed by the CA "
            f"in authn.ldap.ca_file ({ca}), has expired, or does not name this host"
        )

    def search(self, op: Callable[[Any], T]) -> T:
        """Run ``op(service_connection)``, reconnecting once if the connection went away.

        Raises DirectoryDown when no host can be reached; other python-ldap errors pass."""
        return self._service.run(op)

    def user_bind(self, op: Callable[[Any], T]) -> T:
        """Run ``op(bind_connection)`` (a user's bind), reconnecting once like :meth:`search`."""
        return self._binder.run(op)

    def close(self) -> None:
        self._service.close()
        self._binder.close()


class Pool:
    """A small thread-safe pool of slots, per process.

    ``borrow()`` hands out an idle slot or a new one (so a thread never waits for another);
    ``give_back()`` keeps at most ``keep`` idle slots and closes the rest. After a fork the
    parent's slots are forgotten, never used.
    """

    def __init__(self, config: ConnectionConfig, keep: int = 8) -> None:
        self.config = config
        self.keep = keep
        self._idle: list[Slot] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def borrow(self) -> Slot:
        with self._lock:
            if self._pid != os.getpid():
                self._idle = []  # the parent's sockets: never share them
                self._pid = os.getpid()
            if self._idle:
                return self._idle.pop()
        return Slot(self.config)

    def give_back(self, slot: Slot) -> None:
        with self._lock:
            if len(self._idle) < self.keep and self._pid == os.getpid():
                self._idle.append(slot)
                return
        slot.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for slot in idle:
            slot.close()
