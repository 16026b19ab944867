"""The first checks of a fresh process, on many threads at once (a new event-MPM child):
nothing a check needs may be loaded lazily without a lock. Each scenario runs in a fresh
interpreter, several times, with a tiny thread switch interval to make races likely."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from authn import hashes
from devkit.apache import REPO

FRESH_INTERPRETERS = 4
THREADS = 64

SCENARIO = """
import json, sys, threading
sys.setswitchinterval(1e-6)
spec = json.loads(sys.stdin.read())
from authn import hashes
if spec["mode"] == "bcrypt package":  # as on a system whose crypt(3) has no bcrypt
    system_crypt = hashes.system_crypt
    hashes.system_crypt = lambda pw, setting: None if setting.startswith("$2") else system_crypt(pw, setting)
if spec["mode"] == "file source":
    from authn.sources.passwordfile import PasswordFile
    source = PasswordFile(spec["path"])
    check = lambda user, stored, password: source.check(user, password).granted
else:
    check = lambda user, stored, password: hashes.verify(password, stored)
work = [spec["cases"][i % len(spec["cases"])] for i in range(spec["threads"])]
barrier = threading.Barrier(len(work))
errors, wrong = [], []
def run(user, stored, password, expected):
    barrier.wait()
    try:
        granted = check(user, stored, password.encode())
    except BaseException as exc:
        errors.append(f"{user}: {exc!r}")
        return
    if granted != expected:
        wrong.append(f"{user} {password!r}: {granted}")
threads = [threading.Thread(target=run, args=case) for case in work]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps({"errors": errors, "wrong": wrong}))
"""


def scheme_cases() -> list[tuple[str, str, str, bool]]:
    """(user, stored hash, password, granted?) for every scheme, right and wrong passwords.
    Made here, so that the fresh interpreter has loaded nothing for them."""
    stored = {
        "bcrypt": hashes.make_hash(b"pw-bc", "bcrypt", 4),
        "apr1": hashes.make_hash(b"pw-apr", "apr1"),
        "sha1": hashes.make_hash(b"pw-sha", "sha1"),
        "sha256": hashes.make_hash(b"pw-256", "sha256-crypt", 1000),
        "sha512": hashes.make_hash(b"pw-512", "sha512-crypt", 1000),
        "md5": hashes.system_crypt(b"pw-md5", "$1$saltsalt") or "",
        "des": hashes.make_hash(b"pw-des", "crypt"),
    }
    passwords = {"bcrypt": "pw-bc", "apr1": "pw-apr", "sha1": "pw-sha", "sha256": "pw-256",
                 "sha512": "pw-512", "md5": "pw-md5", "des": "pw-des"}  # fmt: skip
    cases = []
    for user, hashed in stored.items():
        cases += [(user, hashed, passwords[user], True), (user, hashed, passwords[user] + "x", False)]
    return cases


def run_fresh(spec: dict[str, object]) -> dict[str, list[str]]:
    result = subprocess.run(
        [sys.executable, "-c", SCENARIO],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO)},
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    answer: dict[str, list[str]] = json.loads(result.stdout)
    return answer


@pytest.mark.parametrize("mode", ["verify", "bcrypt package", "file source"])
def test_first_checks_on_many_threads_at_once(tmp_path: Path, mode: str) -> None:
    cases = scheme_cases()
    path = tmp_path / "users"
    path.write_text("".join(f"{user}:{stored}\n" for user, stored, _, _ in cases[::2]))
    if mode == "file source":  # unknown names too: they are checked against dummies
        cases += [("nobody", "", "pw-apr", False), ("ghost", "", "whatever", False)]
    spec = {"mode": mode, "cases": cases, "path": str(path), "threads": THREADS}
    for _ in range(FRESH_INTERPRETERS):
        answer = run_fresh(spec)
        assert answer == {"errors": [], "wrong": []}


LOADED = """
import sys
import authn.authenticator  # what the Apache handler imports
loaded = ["passlib" in sys.modules]
from authn.sources.passwordfile import parse_password_file
parse_password_file(sys.argv[1].encode())
loaded.append("passlib" in sys.modules)
print(loaded)
"""


@pytest.mark.parametrize(
    ("line", "loaded"),
    [("alice:{SHA}x", "[False, False]"), ("bob:$apr1$salt$digest", "[False, True]")],
)
def test_passlib_is_loaded_by_a_file_with_apr1_lines_only(line: str, loaded: str) -> None:
    """passlib costs about 8 MB per process: only a file with apr1 lines loads it, and then
    when the file is parsed, before any request checks a password against it."""
    result = subprocess.run(
        [sys.executable, "-c", LOADED, line + "\n"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO)},
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == loaded
