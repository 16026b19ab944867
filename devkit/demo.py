"""The demo: Apache on 127.0.0.1:8080 protecting static and PHP content with the file source.

Run it with ``make demo`` (which installs the Debian packages and the venv first). It builds a
scratch folder with a password file, a group file and four areas, starts Apache unprivileged
from a generated config that includes the shipped conf/ snippets, prints the URLs, the demo
credentials and ready curl lines, and stops cleanly on Ctrl-C.

The port is 8080, or ``AUTHN_DEMO_PORT``. When another program has it, the demo says so in one
line and exits 1: it never takes another server's answer for its own Apache. The scratch
folder (under ``TMPDIR``, default /tmp) is removed when the demo stops, and Apache stops with
the demo even if the demo is killed.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from authn import hashes
from devkit.apache import (
    CONF_DIR,
    Apache,
    PortInUse,
    apache_available,
    make_readable,
    port_is_free,
    run_user,
)

DEFAULT_PORT = 8080
USERS = {"alice": ("wonderland", True), "bob": ("builder", False)}


def build_site(root: Path) -> str:
    www = root / "www"
    for area in ("static", "php", "admin", "public"):
        (www / area).mkdir(parents=True)
    (www / "static" / "index.html").write_text("<h1>static: you are in</h1>\n")
    (www / "php" / "index.php").write_text(
        '<?php echo "php: hello ", htmlspecialchars($_SERVER["REMOTE_USER"]),'
        ' " (", $_SERVER["AUTH_TYPE"], ")\\n";\n'
    )
    (www / "admin" / "index.html").write_text("<h1>admin: members of 'admins' only</h1>\n")
    (www / "public" / "index.html").write_text("<h1>public: no password needed</h1>\n")
    users = root / "users"
    users.write_text(
        "".join(f"{name}:{hashes.make_hash(pw.encode(), 'bcrypt', 10)}\n" for name, (pw, _) in USERS.items())
    )
    cache = root / "cache"  # the machine-wide credential cache, owned by the Apache user
    cache.mkdir(mode=0o700)
    entry = pwd.getpwnam(run_user()[0])
    os.chown(cache, entry.pw_uid, entry.pw_gid)
    groups = root / "groups"
    groups.write_text("admins: " + " ".join(n for n, (_, admin) in USERS.items() if admin) + "\n")
    return f"""
Include "{CONF_DIR}/authn.conf"
DocumentRoot "{www}"
DirectoryIndex index.html index.php
<Directory "{www}">
    Require all granted
</Directory>
<Directory "{www}/static">
    Include "{CONF_DIR}/authn-basic.conf"
    AuthName "authn demo"
    PythonOption authn.file "{users}"
    PythonOption authn.cache.dir "{cache}"
    Require valid-user
</Directory>
<Directory "{www}/php">
    Include "{CONF_DIR}/authn-basic.conf"
    AuthName "authn demo"
    PythonOption authn.file "{users}"
    PythonOption authn.cache.dir "{cache}"
    Require valid-user
</Directory>
<Directory "{www}/admin">
    Include "{CONF_DIR}/authn-basic.conf"
    AuthName "authn demo admin"
    PythonOption authn.file "{users}"
    PythonOption authn.groupfile "{groups}"
    PythonOption authn.require.group admins
    PythonOption authn.cache.dir "{cache}"
    Require valid-user
</Directory>
"""


class DemoError(Exception):
    """Why the demo cannot run, in one line."""


def demo_port() -> int:
    raw = os.environ.get("AUTHN_DEMO_PORT", str(DEFAULT_PORT))
    if not raw.strip().isdigit() or not 1 <= int(raw) <= 65535:
        raise DemoError(f"AUTHN_DEMO_PORT={raw!r} is not a port number (1-65535)")
    return int(raw)


def port_taken(port: int) -> DemoError:
    other = 8081 if port == DEFAULT_PORT else DEFAULT_PORT
    return DemoError(
        f"port {port} is in use by another program; stop it or choose another port: "
        f"AUTHN_DEMO_PORT={other} make demo"
    )


def main() -> int:
    try:
        missing = apache_available()
        if missing:
            raise DemoError(missing)
        port = demo_port()
        try:
            free = port_is_free(port)
        except OSError as exc:  # a port below 1024 without root, for one
            raise DemoError(
                f"cannot use port {port}: {exc.strerror}; choose another with AUTHN_DEMO_PORT"
            ) from None
        if not free:
            raise port_taken(port)
        root = Path(tempfile.mkdtemp(prefix="authn-demo-"))
        try:
            return serve(root, port)
        finally:
            shutil.rmtree(root, ignore_errors=True)
    except DemoError as exc:
        print(f"authn demo: {exc}", file=sys.stderr)
        return 1


def serve(root: Path, port: int) -> int:
    """Build the site in ``root``, run Apache until Ctrl-C, stop it whatever happens."""
    make_readable(root)
    body = build_site(root)
    make_readable(root)
    server = Apache(root / "apache", body, modules=("php8.2",), port=port)
    try:
        server.start()
    except PortInUse:  # taken between our check and Apache's bind
        raise port_taken(port) from None
    except RuntimeError as exc:
        raise DemoError(f"Apache did not start: {exc}") from None
    try:
        announce(server, root)
        wait_for_stop()
    finally:
        server.stop()
        print("authn demo: Apache stopped.", flush=True)
    return 0


def announce(server: Apache, root: Path) -> None:
    url = server.url
    print(
        f"""
authn demo: Apache is serving {url}  (scratch folder {root})

  {url}/public/   open to all
  {url}/static/   any valid user          (static file)
  {url}/php/      any valid user          (PHP sees REMOTE_USER and AUTH_TYPE)
  {url}/admin/    group 'admins' only     (alice yes, bob no)

Users: alice / wonderland (in admins), bob / builder

  curl -i {url}/static/                          # 401 with the Basic challenge
  curl -u alice:wonderland {url}/static/
  curl -u bob:builder {url}/php/
  curl -u bob:builder -i {url}/admin/            # 401: not in admins
  curl -u alice:wonderland {url}/admin/
  curl -u alice:wrong -i {url}/static/           # 401, logged in {server.error_log_path}

Edit {root}/users (e.g. with 'authn passwd') and the change applies within a second.
Press Ctrl-C to stop (the scratch folder is removed).
""",
        flush=True,
    )


def wait_for_stop() -> None:
    """Return on Ctrl-C, SIGTERM or SIGHUP (the terminal closed)."""
    stops = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    try:
        # Block the signals only now: Apache's processes must not inherit a blocked SIGTERM
        # (its children would then ignore their parent's shutdown and linger).
        signal.pthread_sigmask(signal.SIG_BLOCK, stops)
        signal.sigwait(stops)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    # stop cleanly (Apache stopped, folder removed) while starting too
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.default_int_handler)
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
