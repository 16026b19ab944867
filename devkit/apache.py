"""A throwaway Apache httpd, started unprivileged from a generated config in a scratch folder.

Used by the tests, ``make demo`` and the benchmark, so that all three run the shipped
``conf/`` snippets exactly as an admin would.

* Modules are loaded from Debian's ``mods-available/*.load`` files in alphabetical order, as
  Debian's stock ``apache2.conf`` does with ``mods-enabled/*.load``: ``auth_basic`` comes
  before ``python`` (the default situation on a Debian server).
* Apache is started with a clean environment, as ``apache2ctl`` does: a foreign Python on
  ``PATH`` or ``PYTHONHOME`` would make mod_python's embedded interpreter fail.
* The port is free when chosen; readiness is a poll that notices a server that died and
  accepts only a listening socket that this Apache holds: when the port is taken, Apache dies
  with "Address already in use" while the other program answers, and :class:`PortInUse` is
  raised.
* Everything it writes stays in its work folder: ``TMPDIR`` points there (the default lockout
  folder follows it) and so does a server-level ``authn.cache.dir`` (a location may set its
  own), never ``/tmp`` or ``/var/cache/authn``.
* Two ways to find authn, chosen by ``AUTHN_TEST_INSTALLED``:

  - unset (``make test``): the venv's copy, appended to the embedded Python's path (what the
    ``.pth`` file an admin writes for the venv layout does; here a ``sitecustomize`` in a
    folder of the work folder on ``PYTHONPATH``, so nothing is written under /usr), the
    snippets of this checkout's ``conf/``, and a generated ``httpd.conf``;
  - ``AUTHN_TEST_INSTALLED=1``: the installed Debian package (``/usr/lib/python3``, the
    snippets in ``/usr/share/authn/conf``, its ``conf-available/authn.conf`` enabled), in a
    copy of Debian's stock ``/etc/apache2`` started with ``apache2 -d <copy>``: the same
    ``apache2.conf``, ``mods-enabled``, ``conf-enabled`` and ``sites-enabled`` folders, with
    only ``ports.conf``, the MPM and the modules a test needs changed in the copy, and the
    test's config as a site of its own.
* It dies with the process that started it (even one killed by SIGKILL), and ``stop()`` is
  SIGTERM, wait, then SIGKILL to whatever is left in its process group. ``error_log()`` is
  there to attach to a failing test.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from devkit.processes import DIE_WITH_PARENT, stop_group

REPO = Path(__file__).resolve().parents[1]
#: run against the installed Debian package and a copy of the stock /etc/apache2
INSTALLED = os.environ.get("AUTHN_TEST_INSTALLED", "") not in ("", "0")
STOCK_CONFDIR = Path("/etc/apache2")
PACKAGE_CONF_DIR = Path("/usr/share/authn/conf")
PACKAGE_SITE_PACKAGES = "/usr/lib/python3/dist-packages"
CONF_DIR = PACKAGE_CONF_DIR if INSTALLED else REPO / "conf"
MODS_AVAILABLE = Path("/etc/apache2/mods-available")
APACHE_BIN = shutil.which("apache2", path="/usr/sbin:/usr/bin") or "/usr/sbin/apache2"
CLEAN_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}

BASE_MODULES = (
    "alias", "auth_basic", "authn_core", "authn_file", "authz_core", "authz_groupfile",
    "authz_host", "authz_user", "dir", "env", "headers", "mime", "python", "setenvif",
)  # fmt: skip


def site_packages() -> str:
    """Where Apache finds authn: the venv running us (made from /usr/bin/python3), or the
    Debian package's folder."""
    return PACKAGE_SITE_PACKAGES if INSTALLED else sysconfig.get_paths()["purelib"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PortInUse(RuntimeError):
    """Another program listens on the port Apache was given."""

    def __init__(self, port: int) -> None:
        super().__init__(f"port {port} is in use by another program")
        self.port = port


def port_is_free(port: int) -> bool:
    """True when 127.0.0.1:``port`` can be bound now (as Apache binds it, SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def _listening_inodes(port: int) -> set[str]:
    """Inodes of the sockets listening on TCP ``port`` (any address), from /proc/net."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "0A" and int(fields[1].rpartition(":")[2], 16) == port:  # 0A: LISTEN
                inodes.add(fields[9])
    return inodes


def holds_listener(pid: int, port: int) -> bool:
    """True when process ``pid`` holds a socket listening on ``port``."""
    wanted = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    if not wanted:
        return False
    folder = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(folder)
    except OSError:  # gone
        return False
    for fd in fds:
        with contextlib.suppress(OSError):
            if os.readlink(os.path.join(folder, fd)) in wanted:
                return True
    return False


def apache_available() -> str | None:
    """None when Apache and mod_python are installed; else what is missing."""
    if not os.path.exists(APACHE_BIN):
        return "apache2 is not installed (apt-get install apache2)"
    if not (MODS_AVAILABLE / "python.load").exists():
        return "mod_python is not installed (apt-get install libapache2-mod-python)"
    if INSTALLED and not (STOCK_CONFDIR / "conf-available" / "authn.conf").exists():
        return "AUTHN_TEST_INSTALLED is set but the authn package is not installed"
    return None


def run_user() -> tuple[str, str]:
    """The User/Group Apache switches to: www-data when we are root, else ourselves."""
    if os.geteuid() == 0:
        return "www-data", "www-data"
    name = pwd.getpwuid(os.geteuid()).pw_name
    return name, f"#{os.getegid()}"


def make_readable(path: Path) -> None:
    """Let the Apache run user reach ``path`` (scratch folders are 0700 by default)."""
    for p in [path, *path.parents]:
        if str(p) in ("/", "/tmp"):
            break
        mode = p.stat().st_mode
        p.chmod(mode | 0o055 if p.is_dir() else mode | 0o044)


class Apache:
    """One Apache instance; ``body`` is the site part of the config (Directory blocks...)."""

    def __init__(
        self,
        workdir: Path,
        body: str,
        *,
        mpm: str = "prefork",
        modules: tuple[str, ...] = (),
        without: tuple[str, ...] = (),
        port: int | None = None,
        defines: dict[str, str] | None = None,
        server_conf: str = "",
        log_level: str = "warn",
        host: str = "127.0.0.1",
    ) -> None:
        self.workdir = workdir
        self.host = host  #: the address it listens on (any 127.x.y.z: one machine of several)
        self.mpm = mpm
        self.port = port or free_port()
        self.body = body
        #: ``without``: base modules left out (``("python",)``: an Apache of native modules only)
        self.modules = tuple(sorted({*BASE_MODULES, *modules, f"mpm_{mpm}"} - set(without)))
        self.defines = {
            "AUTHN_SITE_PACKAGES": site_packages(),
            # Debian's mods-available/*.conf refer to these (cgid's ScriptSock, for one)
            "APACHE_RUN_DIR": f"{workdir}/run",
            "APACHE_LOCK_DIR": f"{workdir}/run",
            "APACHE_LOG_DIR": f"{workdir}/logs",
        }
        self.defines["AUTHN_CONF"] = str(CONF_DIR)  # the tests' configs name the snippets by it
        self.defines.update(defines or {})
        self.server_conf = server_conf
        self.log_level = log_level
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        """Apache's environment: clean (see the module docstring), temp files in its folder;
        the venv on PYTHONPATH unless the package is tested; for the stock layout, what
        Debian's ``envvars`` exports."""
        env = {**CLEAN_ENV, "TMPDIR": str(self.workdir / "tmp")}
        if INSTALLED:
            user, group = run_user()
            env.update(
                APACHE_RUN_USER=user,
                APACHE_RUN_GROUP=group,
                APACHE_PID_FILE=f"{self.workdir}/run/httpd.pid",
                APACHE_RUN_DIR=f"{self.workdir}/run",
                APACHE_LOCK_DIR=f"{self.workdir}/run",
                APACHE_LOG_DIR=f"{self.workdir}/logs",
            )
        else:
            env["PYTHONPATH"] = str(self._path_hook())
        return env

    def _path_hook(self) -> Path:
        """A folder whose ``sitecustomize`` appends the venv's site-packages to the embedded
        Python's path, as the ``.pth`` file an admin writes into Debian's local site folder
        does (tests write nothing under /usr). The venv itself on ``PYTHONPATH`` would stand
        in front of the standard library, and mod_python's parent dies at a graceful restart."""
        folder = self.workdir / "pythonpath"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "sitecustomize.py").write_text(f"import site\nsite.addsitedir({site_packages()!r})\n")
        make_readable(folder)
        return folder

    @property
    def confdir(self) -> Path:
        """The copy of /etc/apache2 (installed mode)."""
        return self.workdir / "etc-apache2"

    @property
    def error_log_path(self) -> Path:
        return self.workdir / "logs" / "error.log"

    def config_text(self) -> str:
        user, group = run_user()
        lines = [f'Define {k} "{v}"' for k, v in self.defines.items()]
        lines += [
            f'ServerRoot "{self.workdir}"',
            f'DefaultRuntimeDir "{self.workdir}/run"',
            f'PidFile "{self.workdir}/run/httpd.pid"',
            f"Listen {self.host}:{self.port}",
            "ServerName 127.0.0.1",
            f"User {user}",
            f"Group {group}",
        ]
        for mod in self.modules:  # alphabetical, like Debian's mods-enabled/*.load
            lines.append(f'Include "{MODS_AVAILABLE / (mod + ".load")}"')
        for mod in self.modules:
            conf = MODS_AVAILABLE / f"{mod}.conf"
            if conf.exists() and mod not in ("mpm_prefork", "mpm_event", "mpm_worker"):
                lines.append(f'Include "{conf}"')
        if self.mpm == "prefork":
            lines += ["StartServers 2", "MinSpareServers 2", "MaxSpareServers 10"]
        else:
            lines += [
                "StartServers 1",
                "ServerLimit 4",
                "ThreadsPerChild 16",
                "MaxRequestWorkers 64",
                "MinSpareThreads 8",
                "MaxSpareThreads 32",
            ]
        lines += [
            f'ErrorLog "{self.error_log_path}"',
            f"LogLevel {self.log_level}",
            'LogFormat "%h %u %t \\"%r\\" %>s %b" common',
            f'CustomLog "{self.workdir}/logs/access.log" common',
            "TypesConfig /etc/mime.types",
            "HostnameLookups Off",
            *(["PythonDebug Off"] if "python" in self.modules else []),
            '<Directory "/">',
            "    AllowOverride None",
            "    Require all denied",
            "</Directory>",
            *([f'PythonOption authn.cache.dir "{self.workdir}/cache"'] if "python" in self.modules else []),
            self.server_conf,
            self.body,
        ]
        return "\n".join(lines) + "\n"

    def site_text(self) -> str:
        """Installed mode: the test's part, a site of its own in the stock layout."""
        lines = [f'Define {k} "{v}"' for k, v in self.defines.items()]
        lines += ["ServerName 127.0.0.1", f"LogLevel {self.log_level}"]
        if self.mpm == "prefork":
            lines += ["StartServers 2", "MinSpareServers 2", "MaxSpareServers 10"]
        else:
            lines += ["StartServers 1", "ServerLimit 4", "ThreadsPerChild 16", "MaxRequestWorkers 64",
                      "MinSpareThreads 8", "MaxSpareThreads 32"]  # fmt: skip
        lines += [
            'LogFormat "%h %u %t \\"%r\\" %>s %b" common',
            f'CustomLog "{self.workdir}/logs/access.log" common',
            f'PythonOption authn.cache.dir "{self.workdir}/cache"',  # not /var/cache/authn
            self.server_conf,
            self.body,
        ]
        return "\n".join(lines) + "\n"

    def _write_stock_copy(self) -> Path:
        """Copy Debian's /etc/apache2 (once) and change what a test needs: the port, the
        MPM and the modules, and the test's site. Returns the copy's apache2.conf."""
        conf = self.confdir
        if not conf.exists():
            shutil.copytree(STOCK_CONFDIR, conf, symlinks=True)
            for site in (conf / "sites-enabled").iterdir():
                site.unlink()  # 000-default listens on *:80
        (conf / "ports.conf").write_text(f"Listen 127.0.0.1:{self.port}\n")
        enabled = conf / "mods-enabled"
        for link in enabled.iterdir():
            if link.name.startswith(("mpm_", "php")):
                link.unlink()
        for mod in self.modules:
            for ext in (".load", ".conf"):
                if (conf / "mods-available" / (mod + ext)).exists() and not (enabled / (mod + ext)).exists():
                    (enabled / (mod + ext)).symlink_to(f"../mods-available/{mod}{ext}")
        (conf / "sites-enabled" / "authn-test.conf").write_text(self.site_text())
        return conf / "apache2.conf"

    def command(self, conf: Path, *args: str) -> list[str]:
        if INSTALLED:
            return [APACHE_BIN, "-d", str(self.confdir), "-f", str(conf), *args]
        return [APACHE_BIN, "-f", str(conf), *args]

    def write_config(self) -> Path:
        for sub in ("logs", "run", "run/socks"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        tmp = self.workdir / "tmp"  # like /tmp: each user makes its own private folders
        tmp.mkdir(exist_ok=True)
        tmp.chmod(0o1777)
        cache = self.workdir / "cache"  # the credential cache, owned by the Apache run user
        if not cache.exists():
            cache.mkdir(mode=0o700)
            if os.geteuid() == 0:
                shutil.chown(cache, *run_user())
        if INSTALLED:
            return self._write_stock_copy()
        path = self.workdir / "httpd.conf"
        path.write_text(self.config_text())
        return path

    def configtest(self) -> subprocess.CompletedProcess[str]:
        conf = self.write_config()
        return subprocess.run(self.command(conf, "-t"), env=self.env, capture_output=True, text=True)

    def start(self, timeout: float = 20.0) -> Apache:
        """Start Apache and wait until it serves; raises :class:`PortInUse` when another
        program has the port, RuntimeError when Apache fails otherwise (nothing left running)."""
        conf = self.write_config()
        make_readable(self.workdir)
        out_path = self.workdir / "logs" / "stdout.log"
        with open(out_path, "ab") as out:
            self.proc = subprocess.Popen(
                [*DIE_WITH_PARENT, *self.command(conf, "-DFOREGROUND")],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a terminal's Ctrl-C reaches us; we stop Apache in order
            )
        try:
            self._wait_until_serving(timeout, out_path)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_serving(self, timeout: float, out_path: Path) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = out_path.read_text(errors="replace")
                if "Address already in use" in out + self.error_log():
                    raise PortInUse(self.port)
                raise RuntimeError(f"apache2 exited with {self.proc.returncode}:\n{out}\n{self.error_log()}")
            # Another program on the port answers too: only our own listening socket counts.
            if holds_listener(self.proc.pid, self.port):
                with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), 0.2):
                    return
            time.sleep(0.05)
        if not port_is_free(self.port) and not holds_listener(self.proc.pid, self.port):
            raise PortInUse(self.port)
        raise RuntimeError(f"apache2 did not listen on {self.port} within {timeout}s\n{self.error_log()}")

    def stop(self) -> None:
        """Stop Apache and every process of its group; safe to call twice."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        stop_group(proc)
        if proc.stdout is not None:  # else a ResourceWarning, an error under pytest
            proc.stdout.close()

    def graceful(self) -> None:
        """Graceful restart (re-reads the config, new children)."""
        assert self.proc is not None
        self.write_config()
        self.proc.send_signal(signal.SIGUSR1)
        time.sleep(1.0)

    def error_log(self) -> str:
        try:
            return self.error_log_path.read_text(errors="replace")
        except OSError:
            return ""

    def error_log_since(self, offset: int) -> str:
        with open(self.error_log_path, "rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace")

    def error_log_size(self) -> int:
        try:
            return self.error_log_path.stat().st_size
        except OSError:
            return 0

    def __enter__(self) -> Apache:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":  # pragma: no cover - manual debugging aid
    print(Apache(Path(sys.argv[1]), "").config_text())
