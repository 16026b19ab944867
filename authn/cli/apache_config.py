"""``authn apache-config``: the Apache lines that load authn from this very install.

The site-packages folder is the one of the interpreter running this command, so run it with
the venv that Apache should use (built from ``/usr/bin/python3``, the interpreter that
mod_python embeds). A venv's folder reaches Apache by a ``.pth`` file in Debian's local site
folder (:data:`LOCAL_PTH`): appended to the path, it shadows nothing (``PYTHONPATH`` puts the
venv in front of the standard library, and mod_python's parent then dies at a graceful
restart: "PyEval_SaveThread: ... the GIL is released"); never by a ``PythonPath`` directive, which would apply
to every mod_python application of the server; the Debian package needs neither. The
server-level part is an ``Include`` of the shipped ``conf/authn.conf`` when that folder is
found (``--conf-dir``, ``$AUTHN_CONF_DIR``, the source checkout,
``<prefix>/share/authn/conf``); with ``--inline``, or when it is not found, the same
directives are printed in full so the snippet can be pasted as it is.
"""

from __future__ import annotations

import argparse
import os
import sys
import sysconfig
from pathlib import Path

import authn

MOD_PYTHON_PYTHON = "/usr/bin/python3"

SERVER_LEVEL = """\
PythonImport authn.handlers main_interpreter
PythonAuthenHandler authn.handlers
"""

BLOCK_LINES = """\
    AuthType Basic
    AuthName "Restricted"
    AuthBasicProvider file
    AuthUserFile /dev/null
    AuthBasicAuthoritative Off
    PythonOption authn.source file
    PythonInterpreter main_interpreter
    PythonDebug Off
    PythonAutoReload Off
"""


def find_conf_dir(given: str | None) -> Path | None:
    candidates = [given, os.environ.get("AUTHN_CONF_DIR")]
    candidates.append(str(Path(authn.__file__).resolve().parents[1] / "conf"))
    candidates.append(str(Path(sys.prefix).parent / "conf"))  # /opt/authn/{.venv,conf}
    candidates.append(os.path.join(sys.prefix, "share", "authn", "conf"))
    for candidate in candidates:
        if candidate and (Path(candidate) / "authn.conf").is_file():
            return Path(candidate).resolve()
    return None


SYSTEM_SITE_PACKAGES = ("/usr/lib/python3/dist-packages",)
#: where a venv install is named to Debian's Python (appended to sys.path, never in front)
LOCAL_PTH = "/usr/local/lib/python3.11/dist-packages/authn.pth"


def snippet(site_packages: str, conf_dir: Path | None) -> str:
    out = [
        f"# authn {authn.__version__}: paste into the main server config (outside any",
        "# <VirtualHost>), once, before the protected blocks. Needs mod_python and mod_auth_basic.",
    ]
    if site_packages not in SYSTEM_SITE_PACKAGES:
        out += [
            "# Apache must find this install: once, a .pth file in Debian's local site folder",
            "# (it appends the venv to the embedded Python's path), then restart Apache:",
            f"#   echo {site_packages} > {LOCAL_PTH}",
        ]
    if conf_dir is not None:
        out.append(f'Include "{conf_dir}/authn.conf"')
        block_include = f'    Include "{conf_dir}/authn-basic.conf"\n'
    else:
        out.append(SERVER_LEVEL.rstrip("\n"))
        block_include = BLOCK_LINES
    out += [
        "",
        "# Then, in each block to protect (<Directory>, <Location>, <VirtualHost>):",
        "<Location /private>",
        block_include.rstrip("\n"),
        '    AuthName "Private area"',
        "    PythonOption authn.file /etc/apache2/authn/users",
        "    Require valid-user",
        "</Location>",
    ]
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="authn apache-config",
        description="Print the Apache lines that load authn from this install (its "
        "site-packages and conf/ folder). Run it with the venv Apache should use.",
    )
    parser.add_argument("--conf-dir", help="the folder holding authn.conf and authn-basic.conf")
    parser.add_argument("--inline", action="store_true", help="print the directives instead of Include lines")
    args = parser.parse_args(argv)
    conf_dir = None if args.inline else find_conf_dir(args.conf_dir)
    site_packages = sysconfig.get_paths()["purelib"]
    base = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    if base != os.path.realpath(MOD_PYTHON_PYTHON):
        print(
            f"authn apache-config: warning: this Python ({base}) is not {MOD_PYTHON_PYTHON}, "
            "the interpreter mod_python embeds; build the venv with "
            f"'{MOD_PYTHON_PYTHON} -m venv' or Apache will not import authn",
            file=sys.stderr,
        )
    sys.stdout.write(snippet(site_packages, conf_dir))
    return 0
