"""The Apache parent's memory across graceful restarts: with authn, and with a trivial
mod_python handler (the baseline that shows what mod_python itself adds).

``python -m bench.graceful [--restarts N]``; ``python -m bench`` runs it too and puts the
table in its report. Each Apache (prefork, 2 children) is throwaway, started from
:mod:`devkit.apache`; after a warm-up request, it gets N graceful restarts (SIGUSR1), each
followed by a request once the new generation of children answers, and the parent's resident
memory (``VmRSS``) is read after each. Reported: the growth per graceful restart, as the
slope of a least-squares line over the restarts (so one noisy sample does not decide).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from authn import hashes
from devkit.apache import CONF_DIR, Apache, apache_available
from devkit.http import basic, request

TRIVIAL_HANDLER = """from mod_python import apache


def authenhandler(req):
    req.get_basic_auth_pw()
    return apache.OK if req.user == "alice" else apache.HTTP_UNAUTHORIZED
"""


@dataclass
class Growth:
    name: str
    restarts: int
    rss_kb: list[int]  #: the parent's VmRSS after the warm-up, then after each restart

    @property
    def per_restart_kb(self) -> float:
        """Least-squares slope of RSS over the restart number."""
        n = len(self.rss_kb)
        xs = range(n)
        mx, my = (n - 1) / 2, sum(self.rss_kb) / n
        num = sum((x - mx) * (y - my) for x, y in zip(xs, self.rss_kb, strict=True))
        den = sum((x - mx) ** 2 for x in xs)
        return num / den if den else 0.0


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _bodies(root: Path) -> dict[str, tuple[str, str]]:
    """name -> (server config, vhost body): authn as shipped, and a trivial handler."""
    site = root / "site"
    site.mkdir(parents=True, exist_ok=True)
    (site / "index.html").write_text("hi\n")
    users = root / "users"
    users.write_text(f"alice:{hashes.make_hash(b'pw', 'bcrypt', 5)}\n")
    users.chmod(0o644)
    handler = root / "trivial"
    handler.mkdir(exist_ok=True)
    (handler / "trivialauth.py").write_text(TRIVIAL_HANDLER)
    authn = (
        f'Include "{CONF_DIR}/authn.conf"',
        f'Alias /p "{site}"\n<Directory "{site}">\n    Include "{CONF_DIR}/authn-basic.conf"\n'
        f'    PythonOption authn.file "{users}"\n    Require valid-user\n</Directory>\n',
    )
    trivial = (
        f"PythonPath \"['{handler}'] + sys.path\"\nPythonInterpreter main_interpreter",
        f'Alias /p "{site}"\n<Directory "{site}">\n    AuthType Basic\n    AuthName x\n'
        "    AuthBasicProvider file\n    AuthUserFile /dev/null\n    AuthBasicAuthoritative Off\n"
        f"    PythonAuthenHandler trivialauth\n    Require valid-user\n</Directory>\n",
    )
    return {"trivial mod_python handler": trivial, "authn": authn}


def _served(apache: Apache, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if request(apache.port, "/p/index.html", auth=basic("alice", "pw"), timeout=5).status == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"Apache on {apache.port} does not answer 200:\n{apache.error_log()[-2000:]}")
        time.sleep(0.1)


def measure(root: Path, restarts: int) -> list[Growth]:
    results = []
    conf = "StartServers 2\nMinSpareServers 2\nMaxSpareServers 2\nServerLimit 2\nMaxRequestWorkers 2"
    for name, (server_conf, body) in _bodies(root).items():
        apache = Apache(root / name.replace(" ", "-"), body, server_conf=f"{server_conf}\n{conf}")
        apache.start()
        try:
            assert apache.proc is not None
            pid = apache.proc.pid
            _served(apache)
            rss = [_rss_kb(pid)]
            for _ in range(restarts):
                generation = apache.error_log_size()
                apache.proc.send_signal(signal.SIGUSR1)
                deadline = time.monotonic() + 20
                while "resuming normal operations" not in apache.error_log_since(generation):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"no graceful restart:\n{apache.error_log()[-2000:]}")
                    time.sleep(0.05)
                _served(apache)
                rss.append(_rss_kb(pid))
            results.append(Growth(name, restarts, rss))
        finally:
            apache.stop()
    return results


def report(results: list[Growth]) -> str:
    lines = [
        "## The Apache parent's memory per graceful restart",
        "",
        "| Apache with | restarts | parent RSS before | after | growth per graceful |",
        "|---|---|---|---|---|",
    ]
    for g in results:
        lines.append(
            f"| {g.name} | {g.restarts} | {g.rss_kb[0] / 1024:.1f} MB | {g.rss_kb[-1] / 1024:.1f} MB "
            f"| {g.per_restart_kb / 1024:.2f} MB |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.graceful", description=__doc__.split("\n")[0])
    parser.add_argument("--restarts", type=int, default=20, help="graceful restarts per Apache (20)")
    args = parser.parse_args(argv)
    problem = apache_available()
    if problem:
        print(f"cannot run: {problem}", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="authn-graceful-"))
    root.chmod(0o755)
    try:
        print(report(measure(root, max(2, args.restarts))))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
