"""The benchmark: authn against Apache's own modules, on throwaway Apaches, in one run.

``python -m bench --quick`` (about 5 minutes) or ``python -m bench`` (the full run, about 25
minutes on 2 cores). Everything runs on loopback: the benchmark makes a scratch folder, writes the
users (bcrypt cost 5, as ``htpasswd -B -C 5``), starts its own Apaches from
:mod:`devkit.apache`, drives them with ``wrk`` (every run bounded in duration,
connections and timeout), stops them, and writes into ``bench/results/<time>/``:

* ``results.md``: the table (req/s, p50, p99, ratio to the no-auth ceiling and to the native
  module), cold first requests, resident memory per Apache child, the targets met or missed,
  and the Apache parent's growth per graceful restart with authn and with a trivial
  mod_python handler (:mod:`bench.graceful`);
* ``results.json``: the same numbers, every repeat;
* ``chart.png``: req/s per row (needs matplotlib: ``pip install -e '.[bench]'``).

Two Apaches per MPM (prefork with 20 children, event with 2 x 16 threads): ``bare`` loads
mod_python but not authn (the no-auth ceiling and native mod_authn_file live there, so native
pays nothing for us), ``authn`` includes ``conf/authn.conf`` (our handlers stand at server
level) and serves our rows. Rows are measured after a warm-up, repeated ``--repeat`` times
round-robin so that noise from other load hits all rows alike, and the median is reported
with the spread.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import http.client
import json
import os
import pwd
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlencode

from authn import hashes
from bench import flood, graceful
from devkit.apache import Apache, apache_available, run_user
from devkit.http import request

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
ROTATE_LUA = HERE / "rotate.lua"
BCRYPT_COST = 5
ROTATING_USERS = 1000
COLD_USERS_FULL = 200
COLD_USERS_QUICK = 60
BIG_FILE_USERS = 100_000
PAGE = ("x" * 1023 + "\n").encode()  # a 1 KB static file

PREFORK_CONF = """
StartServers 20
MinSpareServers 20
MaxSpareServers 20
ServerLimit 20
MaxRequestWorkers 20
MaxConnectionsPerChild 0
"""
# ListenCoresBucketsRatio 1: a listening socket per process, the kernel spreads wrk's
# connections over both; with one shared socket, how they fell on the two processes (one
# Python interpreter lock each) changed from run to run, and rows flipped between ~18k and
# ~35k req/s with nothing changed
EVENT_CONF = """
ServerLimit 2
StartServers 2
ThreadsPerChild 16
ThreadLimit 16
MaxRequestWorkers 32
MinSpareThreads 32
MaxSpareThreads 64
MaxConnectionsPerChild 0
ListenCoresBucketsRatio 1
"""


# --- users and tokens ---------------------------------------------------------------------


def token(user: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:pw-{user}".encode()).decode()


@dataclass
class Files:
    root: Path
    users: Path  #: 1,000 rotating users + the cold users, bcrypt cost 5
    big: Path  #: 100,000 lines: fillers first, then the same real users (native scans it all)
    tokens: Path  #: one Authorization header a line, the rotating users
    cold: list[str]


def make_files(root: Path, cold_count: int) -> Files:
    rotating = [f"u{i:04d}" for i in range(ROTATING_USERS)]
    cold = [f"c{i:04d}" for i in range(cold_count)]
    lines = [
        f"{user}:{hashes.make_hash(f'pw-{user}'.encode(), 'bcrypt', BCRYPT_COST)}\n"
        for user in rotating + cold
    ]
    users = root / "users"
    users.write_text("".join(lines))
    filler = hashes.make_hash(b"filler, never used", "bcrypt", BCRYPT_COST)
    big = root / "users-100k"
    with big.open("w") as fh:
        for i in range(BIG_FILE_USERS - len(lines)):
            fh.write(f"f{i:06d}:{filler}\n")
        fh.writelines(lines)
    tokens = root / "tokens"
    tokens.write_text("".join(token(u) + "\n" for u in rotating))
    return Files(root, users, big, tokens, cold)


# --- the Apaches ----------------------------------------------------------------------------


def chown_to_apache(path: Path) -> None:
    entry = pwd.getpwnam(run_user()[0])
    os.chown(path, entry.pw_uid, entry.pw_gid)


def site_dirs(docroot: Path, names: list[str]) -> None:
    for name in names:
        (docroot / name).mkdir(parents=True, exist_ok=True)
        (docroot / name / "index.html").write_bytes(PAGE)


TRIVIAL_HANDLER = """from mod_python import apache


def authenhandler(req):
    password = req.get_basic_auth_pw()
    if req.user == "u0000" and password == "pw-u0000":
        return apache.OK
    return apache.HTTP_UNAUTHORIZED
"""


def bare_body(docroot: Path, files: Files) -> str:
    """mod_python loaded, authn not: the ceiling, native mod_authn_file, and the floor that
    mod_python itself sets: a trivial authen handler (one constant compare) under the same
    Apache lines as ``conf/authn-basic.conf``."""
    site_dirs(docroot, ["open", "native", "native100k", "trivial"])
    handler_dir = docroot.parent / f"{docroot.name}-handler"
    handler_dir.mkdir(exist_ok=True)
    (handler_dir / "authn_bench_trivial.py").write_text(TRIVIAL_HANDLER)
    trivial = f"""
<Directory "{docroot}/trivial">
    AuthType Basic
    AuthName "bench"
    AuthBasicProvider file
    AuthUserFile /dev/null
    AuthBasicAuthoritative Off
    PythonInterpreter main_interpreter
    PythonPath "['{handler_dir}'] + sys.path"
    PythonAuthenHandler authn_bench_trivial
    Require valid-user
</Directory>"""
    native = """
<Directory "{d}/{name}">
    AuthType Basic
    AuthName "bench"
    AuthBasicProvider file
    AuthUserFile "{file}"
    Require valid-user
</Directory>"""
    return "\n".join(
        [
            f'DocumentRoot "{docroot}"',
            f'<Directory "{docroot}/open">\n    Require all granted\n</Directory>',
            native.format(d=docroot, name="native", file=files.users),
            native.format(d=docroot, name="native100k", file=files.big),
            trivial,
        ]
    )


def authn_body(docroot: Path, files: Files, cache_dir: Path, conf: str = "") -> str:
    """conf/authn.conf at server level, our rows in <Directory> blocks, as an admin would."""
    site_dirs(docroot, ["open", "ours", "ours-nocache", "ours100k", "ours-nolockout", "ours-form"])
    ours = """
<Directory "{d}/{name}">
    Include "${{AUTHN_CONF}}/authn-basic.conf"
    PythonOption authn.file "{file}"
    PythonOption authn.cache.dir "{cache}"
    PythonOption authn.cache.ttl {ttl}
    Require valid-user
</Directory>"""
    return "\n".join(
        [
            f'Include "{conf or "${AUTHN_CONF}/authn.conf"}"',
            f'DocumentRoot "{docroot}"',
            f'<Directory "{docroot}/open">\n    Require all granted\n</Directory>',
            ours.format(d=docroot, name="ours", file=files.users, cache=cache_dir, ttl=300),
            ours.format(d=docroot, name="ours-nocache", file=files.users, cache=cache_dir, ttl=0),
            ours.format(d=docroot, name="ours100k", file=files.big, cache=cache_dir, ttl=300),
            ours.format(d=docroot, name="ours-nolockout", file=files.users, cache=cache_dir, ttl=300).replace(
                "    Require valid-user", "    PythonOption authn.lockout off\n    Require valid-user"
            ),
            'Include "${AUTHN_CONF}/authn-login.conf"',
            ours.format(d=docroot, name="ours-form", file=files.users, cache=cache_dir, ttl=300).replace(
                "authn-basic.conf", "authn-form.conf"
            ),
        ]
    )


def ldap_body(docroot: Path, ldap: LdapSetup, cache_dir: Path, native_caches: bool) -> str:
    """Native mod_authnz_ldap and authn's ldap source side by side in one Apache, same slapd,
    same service account, same search (``uid`` under the suffix), same group."""
    site_dirs(docroot, ["open", "native-ldap", "native-ldap-group", "ours-ldap", "ours-ldap-group",
                        "ours-ldap-nocache", "ours-ldap-group-nocache"])  # fmt: skip
    native = """
<Directory "{d}/{name}">
    AuthType Basic
    AuthName "bench"
    AuthBasicProvider ldap
    AuthLDAPURL "{url}"
    AuthLDAPBindDN "{bind_dn}"
    AuthLDAPBindPassword "{bind_pw}"
    LDAPReferrals Off
    {require}
</Directory>"""
    ours = """
<Directory "{d}/{name}">
    Include "${{AUTHN_CONF}}/authn-basic.conf"
    PythonOption authn.source ldap
    PythonOption authn.ldap.url "{url}"
    PythonOption authn.ldap.bind_dn "{bind_dn}"
    PythonOption authn.ldap.bind_password_file "{pw_file}"
    PythonOption authn.ldap.group_base "{groups}"
    PythonOption authn.cache.dir "{cache}"
    PythonOption authn.cache.ttl {ttl}
    {group}
    Require valid-user
</Directory>"""
    common = {"d": docroot, "url": ldap.url, "bind_dn": ldap.bind_dn}
    lines = [
        'Include "${AUTHN_CONF}/authn.conf"',
        f'DocumentRoot "{docroot}"',
        f'<Directory "{docroot}/open">\n    Require all granted\n</Directory>',
    ]
    if not native_caches:
        lines += ["LDAPCacheEntries 0", "LDAPOpCacheEntries 0"]
    lines += [
        native.format(**common, name="native-ldap", bind_pw=ldap.bind_password, require="Require valid-user"),
        native.format(**common, name="native-ldap-group", bind_pw=ldap.bind_password,
                      require=f'Require ldap-group {ldap.group_dn}'),
    ]  # fmt: skip
    group = f"PythonOption authn.require.group {ldap.group_name}"
    for name, ttl, grp in (("ours-ldap", 300, ""), ("ours-ldap-group", 300, group),
                           ("ours-ldap-nocache", 0, ""), ("ours-ldap-group-nocache", 0, group)):  # fmt: skip
        lines.append(ours.format(**common, name=name, pw_file=ldap.password_file, groups=ldap.group_base,
                                 cache=cache_dir, ttl=ttl, group=grp))  # fmt: skip
    return "\n".join(lines)


def native_ldap_body(docroot: Path, ldap: LdapSetup) -> str:
    """Native mod_authnz_ldap alone, caches off, in an Apache without mod_python: what an
    admin without authn runs (the same blocks as :func:`ldap_body`'s native ones)."""
    body = ldap_body(docroot, ldap, docroot, native_caches=False).replace(
        'Include "${AUTHN_CONF}/authn.conf"', ""
    )
    head, *blocks = body.split("\n<Directory")
    return "\n<Directory".join([head, *(b for b in blocks if "Python" not in b and "AUTHN_CONF" not in b)])


@contextlib.contextmanager
def apaches(root: Path, files: Files, mpm: str, authn_extra: str = "",
            ldap: LdapSetup | None = None) -> Iterator[dict[str, Apache]]:  # fmt: skip
    server_conf = PREFORK_CONF if mpm == "prefork" else EVENT_CONF
    cache_dir = root / f"cache-{mpm}"
    cache_dir.mkdir(mode=0o700)
    chown_to_apache(cache_dir)
    servers = {
        "bare": Apache(root / f"{mpm}-bare", bare_body(root / f"www-{mpm}-bare", files),
                       mpm=mpm, server_conf=server_conf, log_level="error"),
        "authn": Apache(root / f"{mpm}-authn",
                        authn_body(root / f"www-{mpm}-authn", files, cache_dir),
                        mpm=mpm, server_conf=server_conf + authn_extra, log_level="error"),
    }  # fmt: skip
    if ldap is not None:
        ldap_cache = root / f"cache-{mpm}-ldap"
        ldap_cache.mkdir(mode=0o700)
        chown_to_apache(ldap_cache)
        for name, native_caches in (("ldap", True), ("ldapnc", False)):
            servers[name] = Apache(
                root / f"{mpm}-{name}",
                ldap_body(root / f"www-{mpm}-{name}", ldap, ldap_cache, native_caches),
                mpm=mpm, modules=("ldap", "authnz_ldap"), server_conf=server_conf, log_level="error",
            )  # fmt: skip
        servers["ldapown"] = Apache(
            root / f"{mpm}-ldapown", native_ldap_body(root / f"www-{mpm}-ldapown", ldap),
            mpm=mpm, modules=("ldap", "authnz_ldap"), without=("python",), server_conf=server_conf,
            log_level="error",
        )  # fmt: skip
    try:
        for server in servers.values():
            server.start()
        time.sleep(1.0)  # let prefork fork all its children
        yield servers
    finally:
        for server in servers.values():
            server.stop()


# --- measuring ------------------------------------------------------------------------------


@dataclass
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    bad: int  #: non-2xx answers: a row with bad answers is not valid
    errors: int = 0  #: socket errors (connect, read, write, timeout)


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    return float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")


def wrk(url: str, seconds: float, *, connections: int, header: str | None = None,
        tokens: Path | None = None, cookie: str | None = None) -> Run:  # fmt: skip
    """One bounded wrk run: ``seconds`` long, ``connections`` open, 10 s request timeout."""
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
           "--timeout", "10s"]  # fmt: skip
    if header:
        cmd += ["-H", f"Authorization: {header}"]
    if cookie:
        cmd += ["-H", f"Cookie: {cookie}"]
    if tokens:
        cmd += ["-s", str(ROTATE_LUA)]
    cmd.append(url)
    if tokens:
        cmd += ["--", str(tokens)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    bad = int(non2xx.group(1)) if non2xx else 0
    socket_errors = sum(int(g) for g in errors.groups()) if errors else 0
    if not rps or not total:
        raise RuntimeError(f"cannot read wrk output for {url}:\n{out}")
    return Run(
        float(rps.group(1)),
        _ms(p50.group(1)) if p50 else float("nan"),
        _ms(p99.group(1)) if p99 else float("nan"),
        int(total.group(1)),
        bad,
        socket_errors,
    )


def children_pss_mb(apache: Apache) -> list[float]:
    """Proportional memory (Pss: shared pages split among their users) of each child, in MB."""
    sizes = []
    for pid in _children(apache):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    sizes.append(int(line.split()[1]) / 1024)
    return sizes


def _children(apache: Apache) -> list[str]:
    assert apache.proc is not None
    parent = str(apache.proc.pid)
    found = []
    for entry in os.listdir("/proc"):
        with contextlib.suppress(OSError):
            if entry.isdigit() and Path(f"/proc/{entry}/stat").read_text().split()[3] == parent:
                found.append(entry)
    return found


def children_rss_mb(apache: Apache) -> list[float]:
    """Resident memory (VmRSS) of each child of an Apache, in MB."""
    assert apache.proc is not None
    parent = str(apache.proc.pid)
    sizes = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        fields_ = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields_.get("PPid", "").strip() == parent and "VmRSS" in fields_:
            sizes.append(int(fields_["VmRSS"].split()[0]) / 1024)
    return sizes


def cold_latencies(apache_url: str, path: str, users: list[str]) -> list[float]:
    """Milliseconds for the first request of each user, one at a time on one connection."""
    host, port = apache_url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    times = []
    try:
        for user in users:
            started = time.perf_counter()
            conn.request("GET", path, headers={"Authorization": token(user)})
            response = conn.getresponse()
            response.read()
            times.append((time.perf_counter() - started) * 1000)
            if response.status != 200:
                raise RuntimeError(f"cold request for {user} on {path}: {response.status}")
    finally:
        conn.close()
    return times


def failure_latencies(apache_url: str, path: str, rounds: int) -> dict[str, list[float]]:
    """Milliseconds of wrong-password and unknown-user requests, interleaved one at a time on
    one connection, so that both see the same machine (timing equality, measured)."""
    host, port = apache_url.removeprefix("http://").split(":")
    times: dict[str, list[float]] = {"wrong password": [], "unknown user": []}
    headers = {
        "wrong password": "Basic " + base64.b64encode(b"u0001:not-the-password").decode(),
        "unknown user": "Basic " + base64.b64encode(b"nobody-here:not-the-password").decode(),
    }
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        for _ in range(rounds):
            for kind, header in headers.items():
                started = time.perf_counter()
                conn.request("GET", path, headers={"Authorization": header})
                response = conn.getresponse()
                response.read()
                times[kind].append((time.perf_counter() - started) * 1000)
                if response.status != 401:
                    raise RuntimeError(f"{kind} on {path}: {response.status}")
    finally:
        conn.close()
    return times


def percentiles(values: list[float]) -> str:
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return f"p10 {pick(0.10):.2f} / p50 {pick(0.50):.2f} / p90 {pick(0.90):.2f} / p99 {pick(0.99):.2f} ms"


# --- the rows -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    name: str
    server: str  #: "bare" or "authn"
    path: str
    users: str  #: "one" or "rotating"
    native: str | None = None  #: the native row this one is compared with
    warmup_min: float = 0.0


#: warm-up of the 1,000-user rows: each child (or process) meets each user once before its own
#: cache layer holds it, so the steady state needs about 20 x 1,000 requests first
ROTATING_WARMUP = 5.0

ROWS = (
    Row("no auth (ceiling)", "bare", "/open/", "none"),
    Row("no auth, authn handlers at server level", "authn", "/open/", "none"),
    Row("trivial mod_python authen handler, 1 user (the floor)", "bare", "/trivial/", "one"),
    Row("native mod_authn_file, 1 user", "bare", "/native/", "one"),
    Row("native mod_authn_file, 1,000 users", "bare", "/native/", "rotating", None, ROTATING_WARMUP),
    Row("authn file, cache off, 1 user", "authn", "/ours-nocache/", "one",
        "native mod_authn_file, 1 user"),
    Row("authn file, cache on, 1 user", "authn", "/ours/", "one",
        "native mod_authn_file, 1 user"),
    Row("authn file, cache on, 1,000 users", "authn", "/ours/", "rotating",
        "native mod_authn_file, 1,000 users", ROTATING_WARMUP),
    Row("authn file, cache on, 1,000 users, lockout off", "authn", "/ours-nolockout/", "rotating",
        "native mod_authn_file, 1,000 users", ROTATING_WARMUP),
    Row("authn form, a session cookie", "authn", "/ours-form/", "session",
        "authn file, cache on, 1,000 users"),
    Row("native mod_authn_file, 100k-user file, 1,000 users", "bare", "/native100k/",
        "rotating", None, 5.0),
    Row("authn file, cache on, 100k-user file, 1,000 users", "authn", "/ours100k/",
        "rotating", "native mod_authn_file, 100k-user file, 1,000 users", 5.0),
)  # fmt: skip
TARGET_ROW = "authn file, cache on, 1,000 users"
CEILING = "no auth (ceiling)"
FLOOR_ROW = "trivial mod_python authen handler, 1 user (the floor)"
#: rows measured against the no-auth ceiling, and their goals (issue #15)
CEILING_TARGETS = {
    "prefork": ((TARGET_ROW, 0.60), ("authn file, cache on, 1 user", 0.65)),
    "event": ((TARGET_ROW, 0.65), ("authn file, cache on, 1 user", 0.65)),
}


@dataclass
class LdapSetup:
    """A throwaway slapd (devkit/slapd.py) and what both modules need to use it."""

    url: str
    bind_dn: str
    bind_password: str
    password_file: Path
    group_base: str
    group_name: str
    group_dn: str
    header: str  #: Authorization header value ("Basic ...") of the benchmarked directory user


LDAP_ROWS = (
    Row("native mod_authnz_ldap, caches on", "ldap", "/native-ldap/", "ldap"),
    Row("native mod_authnz_ldap, caches on, ldap-group", "ldap", "/native-ldap-group/", "ldap"),
    Row("native mod_authnz_ldap, caches off", "ldapnc", "/native-ldap/", "ldap"),
    Row("native mod_authnz_ldap, caches off, ldap-group", "ldapnc", "/native-ldap-group/", "ldap"),
    Row("native mod_authnz_ldap, caches off, own Apache (no mod_python)", "ldapown", "/native-ldap/", "ldap"),
    Row("authn ldap, cache on", "ldap", "/ours-ldap/", "ldap", "native mod_authnz_ldap, caches on"),
    Row("authn ldap, cache on, group", "ldap", "/ours-ldap-group/", "ldap",
        "native mod_authnz_ldap, caches on, ldap-group"),
    Row("authn ldap, cache off", "ldapnc", "/ours-ldap-nocache/", "ldap",
        "native mod_authnz_ldap, caches off"),
    Row("authn ldap, cache off, group", "ldapnc", "/ours-ldap-group-nocache/", "ldap",
        "native mod_authnz_ldap, caches off, ldap-group"),
)  # fmt: skip


@contextlib.contextmanager
def ldap_setup(root: Path) -> Iterator[LdapSetup | None]:
    """A slapd for the LDAP rows, or None (rows skipped with a message, never faked)."""
    try:
        from devkit import slapd as harness
    except ImportError as exc:  # python-ldap missing
        print(f"LDAP rows skipped: {exc}")
        yield None
        return
    missing = harness.slapd_available()
    if missing:
        print(f"LDAP rows skipped: {missing}")
        yield None
        return
    server = harness.Slapd(root / "slapd")
    server.start()
    try:
        pw_file = root / "ldap-service-password"
        pw_file.write_text(harness.SERVICE_PASSWORD + "\n")
        chown_to_apache(pw_file)
        user = "alice"
        raw = f"{user}:{harness.USERS[user]}".encode()
        yield LdapSetup(
            url=f"{server.ldap_url}/{harness.SUFFIX}?uid?sub",
            bind_dn=harness.SERVICE_DN,
            bind_password=harness.SERVICE_PASSWORD,
            password_file=pw_file,
            group_base=harness.GROUPS,
            group_name="admins",
            group_dn=f"cn=admins,{harness.GROUPS}",
            header="Basic " + base64.b64encode(raw).decode(),
        )
    finally:
        server.stop()


@dataclass
class Result:
    mpm: str
    row: Row
    runs: list[Run] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return statistics.median(r.rps for r in self.runs)

    @property
    def spread(self) -> float:
        """(max - min) / median of req/s over the repeats."""
        values = [r.rps for r in self.runs]
        middle = statistics.median(values) if values else 0.0
        return (max(values) - min(values)) / middle if middle else 0.0

    def median(self, attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in self.runs)


def measure_mpm(mpm: str, root: Path, files: Files, args: argparse.Namespace,
                ldap: LdapSetup | None = None) -> dict[str, object]:  # fmt: skip
    rows = [
        row
        for row in (*ROWS, *(LDAP_ROWS if ldap is not None else ()))
        if not args.only or row.name == CEILING or any(word in row.name for word in args.only)
    ]
    results = {row.name: Result(mpm, row) for row in rows}
    memory: dict[str, object] = {}
    with apaches(root, files, mpm, args.authn_extra.replace("\\n", "\n"), ldap) as servers:
        one = token("u0000")
        for server in servers.values():  # touch every child once, then take the baseline
            wrk(server.url + "/open/", 1, connections=20)
        memory["bare child MB (after no-auth traffic)"] = children_rss_mb(servers["bare"])
        memory["authn child MB (at start, authn imported)"] = children_rss_mb(servers["authn"])
        for repeat in range(args.repeat):
            for row in rows:
                server = servers[row.server]
                kwargs: dict[str, object] = {"connections": args.connections}
                if row.users == "one":
                    kwargs["header"] = one
                elif row.users == "ldap" and ldap is not None:
                    kwargs["header"] = ldap.header
                elif row.users == "rotating":
                    kwargs["tokens"] = files.tokens
                elif row.users == "session":
                    kwargs["cookie"] = sign_in(server.port, row.path, "u0000", "pw-u0000")
                url = server.url + row.path
                wrk(url, max(args.warmup, row.warmup_min), **kwargs)  # type: ignore[arg-type]
                run = wrk(url, args.seconds, **kwargs)  # type: ignore[arg-type]
                results[row.name].runs.append(run)
                print(f"  {mpm:8} {repeat + 1}/{args.repeat} {row.name:55} "
                      f"{run.rps:9.0f} req/s  p50 {run.p50_ms:7.2f} ms  non-2xx {run.bad} "
                      f"socket errors {run.errors}")  # fmt: skip
                if row.name == TARGET_ROW and repeat == 0:
                    memory["authn child MB (after first 1,000-user run)"] = children_rss_mb(servers["authn"])
                    memory["authn child Pss MB (after first 1,000-user run)"] = children_pss_mb(
                        servers["authn"]
                    )
                    memory["bare child Pss MB (same time)"] = children_pss_mb(servers["bare"])
        # Flat over time: the 1,000-user row again for long enough to serve ~100,000 requests.
        memory["authn child MB (before the long run)"] = children_rss_mb(servers["authn"])
        long_run = wrk(servers["authn"].url + "/ours/", args.long_seconds,
                       connections=args.connections, tokens=files.tokens)  # fmt: skip
        memory["requests in the long run"] = long_run.requests
        memory["authn child MB (after the long run)"] = children_rss_mb(servers["authn"])
        cold_native = cold_latencies(servers["bare"].url, "/native/", files.cold)
        cold_ours = cold_latencies(servers["authn"].url, "/ours/", files.cold)
        # lockout would answer 429 after 10 failures from one address: use the lockout-free row
        failures = failure_latencies(servers["authn"].url, "/ours-nolockout/", len(files.cold))
    return {
        "results": results,
        "memory": memory,
        "cold": {"native": cold_native, "ours": cold_ours},
        "failures": failures,
    }


def sign_in(port: int, path: str, user: str, password: str) -> str:
    """A session cookie (``authn_session=...``) from the sign-in page, as a browser gets it."""
    html = {"Accept": "text/html"}
    first = request(port, path, headers=html)
    page = request(port, first.headers["location"], headers=html)
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)"', page.body.decode()))
    csrf = page.cookie("authn_csrf") or ""
    form = urlencode({**fields, "user": user, "password": password}).encode()
    headers = {**html, "Cookie": f"authn_csrf={csrf}", "Content-Type": "application/x-www-form-urlencoded"}
    done = request(port, "/authn/login", method="POST", body=form, headers=headers)
    token = done.cookie("authn_session")
    if done.status != 303 or not token:
        raise RuntimeError(f"sign-in for the session row failed: {done.status} {done.body[:200]!r}")
    return f"authn_session={token}"


def lookup_costs() -> dict[str, float]:
    """Microseconds per cache lookup in this process (the pure cost, without Apache)."""
    from authn.cache.shared import SharedStore
    from authn.cache.verdicts import VerdictCache, _LocalLayer
    from authn.verdict import Verdict

    class Fixed:
        name = "file"

        def generation(self) -> object:
            return (1, 2, 3, 4)

        def check(self, user: str, password: bytes) -> Verdict:
            raise AssertionError

    with tempfile.TemporaryDirectory() as tmp:
        store = SharedStore(tmp + "/c", 4096)
        local = VerdictCache(b"bench", [Fixed()], 300, store, _LocalLayer(1024))
        shared = VerdictCache(b"bench", [Fixed()], 300, store, _LocalLayer(0))
        local.store_verdict("alice", b"secret", Verdict.grant("alice", "file"))
        n = 50_000
        out = {}
        for name, fn in (
            ("hit, per-process layer", lambda: local.lookup("alice", b"secret")),
            ("hit, machine-wide store", lambda: shared.lookup("alice", b"secret")),
            ("miss (wrong password)", lambda: local.lookup("alice", b"wrong")),
        ):
            started = time.perf_counter()
            for _ in range(n):
                fn()
            out[name] = (time.perf_counter() - started) / n * 1e6
        store.close()
    return out


# --- the report -----------------------------------------------------------------------------


def ratio(a: float, b: float | None) -> str:
    return f"{a / b:.2f}" if b else ""


def report(data: dict[str, dict[str, object]], costs: dict[str, float],
           args: argparse.Namespace) -> str:  # fmt: skip
    lines = [
        f"# authn benchmark, {dt.datetime.now().isoformat(timespec='seconds')}",
        "",
        f"Machine: {os.cpu_count()} cores; wrk -t2 -c{args.connections}, {args.seconds:g} s "
        f"per run after {args.warmup:g} s warm-up (5 s for the rows of 1,000 rotating users), "
        f"{args.repeat} repeat(s) round-robin, median shown; bcrypt cost {BCRYPT_COST}; "
        "a 1 KB static file. Spread = (max - min) / median of req/s over the repeats.",
        "",
        "| MPM | row | req/s | spread | p50 ms | p99 ms | x ceiling | x native | non-2xx | socket errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    targets = []
    for mpm, block in data.items():
        results: dict[str, Result] = block["results"]  # type: ignore[assignment]
        ceiling = results[CEILING].rps
        for name, res in results.items():
            if not res.runs:
                continue
            native_row = results.get(res.row.native) if res.row.native else None
            native = native_row.rps if native_row is not None else None
            lines.append(
                f"| {mpm} | {name} | {res.rps:.0f} | {res.spread:.0%} | "
                f"{res.median('p50_ms'):.2f} | {res.median('p99_ms'):.2f} | "
                f"{ratio(res.rps, ceiling)} | {ratio(res.rps, native)} | "
                f"{sum(r.bad for r in res.runs)} | {sum(r.errors for r in res.runs)} |"
            )
        if TARGET_ROW not in results or "no auth, authn handlers at server level" not in results:
            continue  # a partial run (--only): the table only
        floor = (
            results[FLOOR_ROW].rps / ceiling if results.get(FLOOR_ROW) and results[FLOOR_ROW].runs else 0.0
        )
        if floor:
            targets.append(
                f"- {mpm}: the floor, a trivial mod_python authen handler (one constant compare) = "
                f"{floor:.2f} of the no-auth ceiling"
            )
        for row_name, goal in CEILING_TARGETS[mpm]:
            if row_name not in results or not results[row_name].runs:
                continue
            got = results[row_name].rps / ceiling
            of_floor = f", {got / floor:.0%} of the floor" if floor else ""
            targets.append(
                f"- {mpm}: {row_name} = **{got:.2f}** of the no-auth ceiling{of_floor} "
                f"(target >= {goal:.2f}): {'met' if got >= goal else 'MISSED'}"
            )
        decline = results["no auth, authn handlers at server level"].rps
        targets.append(
            f"- {mpm}: server-level handlers declining on a public page: {decline / ceiling:.2f} "
            f"of the ceiling, about {2e6 * (1 / decline - 1 / ceiling):.0f} us of CPU per "
            "request on 2 cores (negative = noise)"
        )
        cold: dict[str, list[float]] = block["cold"]  # type: ignore[assignment]
        native_ms = statistics.median(cold["native"])
        ours_ms = statistics.median(cold["ours"])
        targets.append(
            f"- {mpm}: first request of a user (cold bcrypt), median of {len(cold['ours'])}: "
            f"ours {ours_ms:.2f} ms, native {native_ms:.2f} ms = {ours_ms / native_ms:.2f} "
            f"(target <= 1.10): {'met' if ours_ms <= native_ms * 1.10 else 'MISSED'}"
        )
        memory: dict[str, object] = block["memory"]  # type: ignore[assignment]
        mem_lines = []
        for label, value in memory.items():
            if isinstance(value, list) and value:
                mem_lines.append(
                    f"  - {label}: mean {statistics.mean(value):.1f}, max {max(value):.1f} "
                    f"({len(value)} children)"
                )
            else:
                mem_lines.append(f"  - {label}: {value}")
        bare = statistics.mean(memory["bare child MB (after no-auth traffic)"])  # type: ignore[arg-type]
        after = statistics.mean(memory["authn child MB (after first 1,000-user run)"])  # type: ignore[arg-type]
        before = statistics.mean(memory["authn child MB (before the long run)"])  # type: ignore[arg-type]
        end = statistics.mean(memory["authn child MB (after the long run)"])  # type: ignore[arg-type]
        targets.append(
            f"- {mpm}: memory, authn child after the 1,000-user run {after:.1f} MB vs bare "
            f"mod_python child {bare:.1f} MB = +{after - bare:.1f} MB (target <= 20): "
            f"{'met' if after - bare <= 20 else 'MISSED'}; "
            f"over {memory['requests in the long run']} more requests (100k-user file loaded "
            f"too): {before:.1f} -> {end:.1f} MB "
            f"({'flat' if abs(end - before) < 1 else 'NOT flat'})"
        )
        failures: dict[str, list[float]] = block["failures"]  # type: ignore[assignment]
        for kind, values in failures.items():
            targets.append(f"- {mpm}: {kind} (401), {len(values)} requests: {percentiles(values)}")
        ldap_targets = (
            ("authn ldap, cache on", None, 1.0),
            ("authn ldap, cache on, group", None, 1.2),
            ("authn ldap, cache off", None, 1.0),
            ("authn ldap, cache off", "native mod_authnz_ldap, caches off, own Apache (no mod_python)", 1.0),
            ("authn ldap, cache off, group", None, 1.0),
        )
        for ours_name, against, factor in ldap_targets:
            res = results.get(ours_name)
            native_name = against or (res.row.native if res is not None else None)
            if res is None or not res.runs or native_name not in results or not results[native_name].runs:
                continue
            native_rps = results[native_name].rps
            got = res.rps / native_rps if native_rps else 0.0
            targets.append(
                f"- {mpm}: {ours_name} = **{got:.2f}** x {native_name} (target >= {factor:g}): "
                f"{'met' if got >= factor else 'MISSED'}"
            )
        targets.append(f"- {mpm}: resident memory per child (MB):")
        targets.extend(mem_lines)
    lines += [
        "",
        "## Targets",
        "",
        *targets,
        "",
        "## Cache lookup cost (this process, no Apache)",
        "",
    ]
    lines += [f"- {name}: {us:.1f} us" for name, us in costs.items()]
    lines += ["", "![req/s](chart.png)", ""]
    return "\n".join(lines)


def chart(data: dict[str, dict[str, object]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("chart skipped: pip install -e '.[bench]' for matplotlib")
        return False
    mpms = list(data)
    names = [n for n, r in data[mpms[0]]["results"].items() if r.runs]  # type: ignore[attr-defined]
    fig, ax = plt.subplots(figsize=(11, 0.5 * len(names) * len(mpms) + 1.5))
    height = 0.8 / len(mpms)
    for i, mpm in enumerate(mpms):
        results = data[mpm]["results"]
        values = [results[n].rps for n in names]  # type: ignore[index]
        ys = [y + i * height for y in range(len(names))]
        ax.barh(ys, values, height=height, label=mpm)
    ax.set_yticks([y + height * (len(mpms) - 1) / 2 for y in range(len(names))], names)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("requests per second (log scale)")
    ax.set_title("authn vs Apache's native modules (bcrypt cost 5, 1 KB static file)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def to_json(data: dict[str, dict[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for mpm, block in data.items():
        results: dict[str, Result] = block["results"]  # type: ignore[assignment]
        out[mpm] = {
            "rows": {n: [asdict(r) for r in res.runs] for n, res in results.items()},
            "memory": block["memory"],
            "cold": block["cold"],
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs, one repeat (about 5 min)")
    parser.add_argument("--seconds", type=float, help="measured seconds per run (full: 8)")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds (2)")
    parser.add_argument("--repeat", type=int, help="rounds over all rows (full: 3)")
    parser.add_argument("--long-seconds", type=float, help="memory run (full: 12, quick: 5)")
    parser.add_argument("--connections", type=int, default=20, help="wrk connections (20)")
    parser.add_argument("--mpm", choices=("prefork", "event"), action="append")
    parser.add_argument("--authn-extra", default="", help="server config lines for the authn "
                        "Apache only, \\n between lines (for experiments)")  # fmt: skip
    parser.add_argument("--only", action="append", help="only rows whose name contains this "
                        "(repeatable; the ceiling always runs)")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("--restarts", type=int, help="graceful restarts for the parent's memory "
                        "(full: 20, quick: 6)")  # fmt: skip
    args = parser.parse_args(argv)
    args.restarts = args.restarts or (6 if args.quick else 20)
    args.seconds = args.seconds or (3.0 if args.quick else 8.0)
    args.repeat = args.repeat or (1 if args.quick else 3)
    args.long_seconds = args.long_seconds or (5.0 if args.quick else 12.0)
    args.connections = max(1, min(args.connections, 200))
    for problem in (apache_available(), None if shutil.which("wrk") else "wrk is not installed"):
        if problem:
            print(f"cannot run the benchmark: {problem}", file=sys.stderr)
            return 2
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="authn-bench-"))
    try:
        print(f"writing users (bcrypt cost {BCRYPT_COST}) in {root}")
        files = make_files(root, COLD_USERS_QUICK if args.quick else COLD_USERS_FULL)
        data = {}
        with ldap_setup(root) as ldap:
            for mpm in args.mpm or ["prefork", "event"]:
                print(f"{mpm}:")
                data[mpm] = measure_mpm(mpm, root, files, args, ldap)
        costs = lookup_costs()
        floods = []
        if not args.only:
            for mpm in args.mpm or ["prefork", "event"]:
                print(f"{mpm}: valid users while one address guesses {flood.ATTACK_RATE} times a second")
                conf = PREFORK_CONF if mpm == "prefork" else EVENT_CONF
                floods.append(flood.measure(root, mpm, conf, files.users, files.tokens, round(args.seconds)))
        print(f"the Apache parent's memory over {args.restarts} graceful restarts:")
        growth = graceful.measure(root / "graceful", args.restarts)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    out = RESULTS / dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    chart(data, out / "chart.png")
    text = (
        report(data, costs, args)
        + "\n"
        + (flood.report(floods) + "\n" if floods else "")
        + graceful.report(growth)
    )
    (out / "results.md").write_text(text)
    (out / "results.json").write_text(json.dumps(to_json(data), indent=1))
    print(text)
    print(f"\nwritten to {out} in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
