"""Facts of the stack that the product relies on, pinned (APACHE-NOTES.md)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from authn import hashes
from devkit.apache import CLEAN_ENV, CONF_DIR, REPO, Apache, free_port
from devkit.http import basic, request


def protected_site(root: Path) -> str:
    users = root / "users"
    users.write_text(f"alice:{hashes.make_hash(b'pw', 'apr1')}\n")
    (root / "www").mkdir()
    (root / "www" / "index.html").write_text("hi\n")
    return f"""
Include "{CONF_DIR}/authn.conf"
DocumentRoot "{root}/www"
<Directory "{root}/www">
    Include "{CONF_DIR}/authn-basic.conf"
    PythonOption authn.file "{users}"
    Require valid-user
</Directory>
"""


def test_missing_require_means_no_protection(scratch: Path, start_apache: Callable[..., Apache]) -> None:
    """APACHE-NOTES #3: with no Require that needs a user, Apache never asks (what `authn check`
    warns about). Pinned so that the doctor's warning stays true."""
    body = protected_site(scratch).replace("    Require valid-user\n", "")
    # as on a stock Debian server, where /var/www is granted to all
    server = start_apache(f'<Directory "{scratch}">\n    Require all granted\n</Directory>\n' + body)
    assert request(server.port, "/").status == 200


def test_python_loaded_first_also_works(scratch: Path, start_apache: Callable[..., Apache]) -> None:
    """The snippet works whichever of mod_auth_basic and mod_python is loaded first."""
    body = "LoadModule python_module /usr/lib/apache2/modules/mod_python.so\n"
    server = start_apache(body + protected_site(scratch), modules=())
    # The harness loads python.load again after auth_basic; Apache skips the second load.
    assert request(server.port, "/").status == 401
    assert request(server.port, "/", auth=basic("alice", "pw")).status == 200


def test_foreign_python_home_breaks_mod_python(scratch: Path) -> None:
    """APACHE-NOTES #16: why the harness, the demo and the benchmark start Apache with a clean
    environment. With a foreign PYTHONHOME the embedded interpreter cannot start."""
    server = Apache(scratch / "apache", protected_site(scratch))
    conf = server.write_config()
    env = {**CLEAN_ENV, "PYTHONHOME": str(scratch / "no-such-python")}
    proc = subprocess.Popen(
        server.command(conf, "-DFOREGROUND"),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status = request(server.port, "/", auth=basic("alice", "pw"), timeout=2).status
                assert status != 200
                return
            except OSError:
                time.sleep(0.1)
        assert proc.poll() is not None  # died at start-up: also "not served"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(15)


def _apache_processes(port: int) -> list[int]:
    """Pids of the Apache processes whose config listens on ``port``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            if cmdline and cmdline[0].endswith(b"apache2") and b"-f" in cmdline:
                conf = Path(cmdline[cmdline.index(b"-f") + 1].decode())
                ports = conf.parent / "ports.conf"  # the stock layout (AUTHN_TEST_INSTALLED)
                text = conf.read_text() + (ports.read_text() if ports.exists() else "")
                if f"Listen 127.0.0.1:{port}" in text:
                    pids.append(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    return pids


def test_demo_command_serves_what_it_prints(scratch: Path) -> None:
    """`make demo` (devkit/demo.py) starts, protects what it says, and stops on Ctrl-C."""
    port = free_port()
    env = {**os.environ, "AUTHN_DEMO_PORT": str(port)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "devkit.demo"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "Press Ctrl-C" in line:
                break
        text = "".join(lines)
        assert f"http://127.0.0.1:{port}/static/" in text and "alice / wonderland" in text
        assert request(port, "/public/").status == 200
        assert request(port, "/static/").status == 401
        assert request(port, "/static/", auth=basic("alice", "wonderland")).status == 200
        php = request(port, "/php/", auth=basic("bob", "builder"))
        assert php.status == 200 and php.body == b"php: hello bob (Basic)\n"
        assert request(port, "/admin/", auth=basic("bob", "builder")).status == 401
        assert request(port, "/admin/", auth=basic("alice", "wonderland")).status == 200
        children = _apache_processes(port)
        assert children, "no Apache processes found for the demo"
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0 and "Apache stopped" in rest
        # every Apache process is gone (none lingers with an inherited blocked SIGTERM)
        deadline = time.monotonic() + 10
        while any(os.path.exists(f"/proc/{pid}") for pid in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in children if os.path.exists(f"/proc/{pid}")]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_handler_inside_location_breaks_files(scratch: Path, start_apache: Callable[..., Apache]) -> None:
    """APACHE-NOTES #9, the reason our handlers stand at server level: a Python*Handler
    directive inside <Location> makes mod_python skip mapping the URL to a file (404), while
    the same <Location> holding only options, with the handlers at server level (our recipe),
    serves files: that is tested in test_file_source.py. (An Alias maps the file before
    mod_python's hook runs, so only URLs mapped through DocumentRoot fall into the trap.)"""
    users = scratch / "users"
    users.write_text(f"alice:{hashes.make_hash(b'pw', 'apr1')}\n")
    (scratch / "www" / "trap").mkdir(parents=True)
    (scratch / "www" / "trap" / "f.txt").write_text("file\n")
    block = f"""    Include "{CONF_DIR}/authn-basic.conf"
    PythonOption authn.file "{users}"
    Require valid-user
"""
    body = f"""
PythonPath "['${{AUTHN_SITE_PACKAGES}}'] + sys.path"
PythonInterpreter main_interpreter
DocumentRoot "{scratch}/www"
<Directory "{scratch}/www">
    Require all granted
</Directory>
<Location /trap>
{block}    PythonAuthenHandler authn.handlers
</Location>
"""
    server = start_apache(body)
    assert request(server.port, "/trap/f.txt", auth=basic("alice", "pw")).status == 404
    assert request(server.port, "/trap/f.txt").status == 401  # the handler itself runs
