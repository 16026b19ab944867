"""authn beside another mod_python application (APACHE-NOTES #23).

Only ``PythonImport`` and the handler directives stand at server level (``conf/authn.conf``);
the interpreter is chosen per block (``authn-basic.conf``) and no ``PythonPath`` is set
anywhere. So an application in its own ``<Directory>`` keeps mod_python's defaults: its own
subinterpreter, and its folder on ``sys.path`` (what a server-level ``PythonPath`` took away:
500, ``No module named 'hello'``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from authn import hashes
from devkit.apache import CONF_DIR, Apache
from devkit.http import basic, request

HELLO = """\
import sys
from mod_python import apache


def handler(req):
    req.content_type = "text/plain"
    here = req.filename.rsplit("/", 1)[0]
    req.write("hello interpreter=%s own-folder-on-path=%s user=%s\\n"
              % (req.interpreter, here in [p.rstrip("/") for p in sys.path], req.user))
    return apache.OK
"""


def site(root: Path) -> str:
    users = root / "users"
    users.write_text(f"alice:{hashes.make_hash(b'pw', 'bcrypt', 5)}\n")
    for area in ("hello", "private", "private-app"):
        (root / "www" / area).mkdir(parents=True)
    (root / "www" / "private" / "index.html").write_text("secret\n")
    # the same application twice: alone, and behind authn (then in authn's interpreter)
    (root / "www" / "hello" / "hello.py").write_text(HELLO)
    (root / "www" / "private-app" / "hello.py").write_text(HELLO)
    protected = f"""    Include "{CONF_DIR}/authn-basic.conf"
    AuthName "private"
    PythonOption authn.file "{users}"
    Require valid-user
"""
    return f"""
Include "{CONF_DIR}/authn.conf"
DocumentRoot "{root}/www"
<Directory "{root}/www">
    Require all granted
</Directory>
<Directory "{root}/www/hello">
    SetHandler mod_python
    PythonHandler hello
</Directory>
<Directory "{root}/www/private">
{protected}</Directory>
<Directory "{root}/www/private-app">
{protected}    SetHandler mod_python
    PythonHandler hello
</Directory>
"""


@pytest.mark.parametrize("mpm", ["prefork", "event"])
def test_other_mod_python_app_keeps_its_interpreter_and_path(
    mpm: str, scratch: Path, start_apache: Callable[..., Apache]
) -> None:
    server = start_apache(site(scratch), mpm=mpm)
    hello = request(server.port, "/hello/x")
    assert hello.status == 200, server.error_log()[-3000:]
    # mod_python's default: a subinterpreter named after the server, the app's folder on sys.path
    assert hello.body == b"hello interpreter=127.0.0.1 own-folder-on-path=True user=None\n"

    assert request(server.port, "/private/").status == 401
    assert request(server.port, "/private/", auth=basic("alice", "nope")).status == 401
    good = request(server.port, "/private/", auth=basic("alice", "pw"))
    assert (good.status, good.body) == (200, b"secret\n")

    # behind authn, a handler runs in the main interpreter, where authn was preloaded
    app = request(server.port, "/private-app/x", auth=basic("alice", "pw"))
    assert (app.status, app.body) == (
        200,
        b"hello interpreter=main_interpreter own-folder-on-path=True user=alice\n",
    )
    assert request(server.port, "/private-app/x").status == 401

    log = server.error_log()
    assert "Traceback" not in log and "Error" not in log.replace("ErrorLog", ""), log[-3000:]
