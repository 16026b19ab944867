"""A cold Apache child under the event MPM: its first requests run on many threads at once
(APACHE-NOTES #22). Every scheme must answer right from the very first request: 200 for the
right password, 401 for a wrong one or an unknown user, never a 500 from a half-imported
library."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from authn import hashes
from devkit.apache import Apache
from devkit.http import basic, request

pytestmark = pytest.mark.apache

StartApache = Callable[..., Apache]

# user -> (password, scheme, cost): one user of every scheme the file source routes
SCHEME_USERS: dict[str, tuple[bytes, str, int | None]] = {
    "bc": (b"bc-pass", "bcrypt", 5),
    "apr": (b"apr-pass", "apr1", None),
    "sha": (b"sha-pass", "sha1", None),
    "s512": (b"s512-pass", "sha512-crypt", None),
    "s256": (b"s256-pass", "sha256-crypt", None),
    "des": (b"despass", "crypt", None),
}
MD5_CRYPT_USER = ("md5", b"md5-pass")  # $1$, made by the system crypt (htpasswd cannot)
ROUNDS = 8  # fresh Apaches
WAVE = 48  # concurrent first requests per Apache (3 x ThreadsPerChild of the harness)


def write_users(path: Path) -> dict[str, bytes]:
    passwords: dict[str, bytes] = {}
    lines = []
    for user, (password, scheme, cost) in SCHEME_USERS.items():
        lines.append(f"{user}:{hashes.make_hash(password, scheme, cost)}")
        passwords[user] = password
    md5 = hashes.system_crypt(MD5_CRYPT_USER[1], "$1$saltsalt")
    assert md5 is not None
    lines.append(f"{MD5_CRYPT_USER[0]}:{md5}")
    passwords[MD5_CRYPT_USER[0]] = MD5_CRYPT_USER[1]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o644)
    return passwords


def site_body(root: Path, users: Path) -> str:
    (root / "private").mkdir(parents=True, exist_ok=True)
    (root / "private" / "index.html").write_text("secret\n")
    return f"""
Include "${{AUTHN_CONF}}/authn.conf"
DocumentRoot "{root}"
<Directory "{root}/private">
    Include "${{AUTHN_CONF}}/authn-basic.conf"
    PythonOption authn.file "{users}"
    PythonOption authn.lockout off
    PythonOption authn.cache.ttl 0
    Require valid-user
</Directory>
"""


def status(port: int, user: str, password: bytes) -> int:
    return request(port, "/private/", auth=basic(user, password)).status


def all_at_once(port: int, wave: list[tuple[str, bytes, int]]) -> list[str]:
    """Send every request of ``wave`` at the same moment, one connection each; the ones
    that did not get the expected status."""
    barrier = threading.Barrier(len(wave))
    wrong: list[str] = []

    def one(user: str, password: bytes, expected: int) -> None:
        barrier.wait()
        try:
            got: int | str = status(port, user, password)
        except OSError as exc:
            got = repr(exc)
        if got != expected:
            wrong.append(f"{user} {password!r}: {got}, expected {expected}")

    threads = [threading.Thread(target=one, args=case) for case in wave]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return wrong


def test_first_concurrent_requests_of_a_cold_event_child_answer_right(
    start_apache: StartApache, scratch: Path
) -> None:
    users = scratch / "users"
    passwords = write_users(users)
    cases: list[tuple[str, bytes, int]] = []
    for user, password in passwords.items():
        cases += [(user, password, 200), (user, password + b"x", 401)]
    cases += [("nobody", b"whatever", 401), ("ghost", b"apr-pass", 401)]
    # apr1 is the scheme whose library loads lazily: a third of the wave, to make a race likely
    wave = [cases[i % len(cases)] for i in range(WAVE * 2 // 3)]
    wave += [("apr", passwords["apr"] + b"x" * (i % 2), 200 if i % 2 == 0 else 401) for i in range(WAVE // 3)]
    failures: list[str] = []
    for round_ in range(ROUNDS):
        # A new Apache each round: a new parent, a new child, nothing imported or warmed by
        # any request yet.
        apache = start_apache(site_body(scratch / f"www{round_}", users), mpm="event")
        failures += [f"round {round_}: {wrong}" for wrong in all_at_once(apache.port, wave)]
        # Read before stopping: mod_python's own shutdown sometimes crashes an event child
        # that ran Python handlers on several threads (a trivial handler too); not ours.
        log = apache.error_log()
        apache.stop()
        for marker in ("Traceback", "ImportError", "_lazy_opts", "Segmentation fault", "exit signal"):
            if marker in log:
                failures.append(f"round {round_}: {marker!r} in the error log")
    assert not failures, "\n".join(failures)
