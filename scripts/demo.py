"""The demo: Apache on 127.0.0.1:8080 protecting static and PHP content with the file source.

Run it with ``make demo`` (which installs the Debian packages and the venv first). It builds a
scratch folder with a password file, a group file and four areas, starts Apache unprivileged
from a generated config that includes the shipped conf/ snippets, prints the URLs, the demo
credentials and ready curl lines, and stops cleanly on Ctrl-C.
"""

from __future__ import annotations

import os
import pwd
import signal
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from authn import hashes
from tests.harness.apache import CONF_DIR, Apache, apache_available, make_readable, run_user

PORT = int(os.environ.get("AUTHN_DEMO_PORT", "8080"))
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


def main() -> int:
    missing = apache_available()
    if missing:
        print(f"authn demo: {missing}", file=sys.stderr)
        return 1
    root = Path(tempfile.mkdtemp(prefix="authn-demo-"))
    make_readable(root)
    body = build_site(root)
    make_readable(root)
    server = Apache(root / "apache", body, modules=("php8.2",), port=PORT)
    try:
        server.start()
    except RuntimeError as exc:
        print(f"authn demo: Apache did not start: {exc}", file=sys.stderr)
        return 1
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
Press Ctrl-C to stop.
""",
        flush=True,
    )
    try:
        # Block the signals only now: Apache's processes must not inherit a blocked SIGTERM
        # (its children would then ignore their parent's shutdown and linger).
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        print("authn demo: Apache stopped.")
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop cleanly while starting too
    sys.exit(main())
