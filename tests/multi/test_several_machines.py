"""Several Apache machines behind a load balancer, proven in one test (docs/several-machines.md).

The topology, all throwaway, on this machine: node A (prefork, listening on 127.0.1.1) and
node B (event, 127.0.2.1), each its own Apache with authn and its own credential cache;
HAProxy in front (127.0.0.1), connecting to the nodes from 127.0.9.1, the only address whose
X-Forwarded-For the nodes' mod_remoteip believes; one Redis (append-only file) for the
lockout counters, the sessions and the sign-in contexts; an OpenLDAP provider and a syncrepl
consumer, both in each node's ``authn.ldap.url``. A driver (tests/multi/load.py) keeps a
steady load of valid users, wrong passwords, unknown users and signed-in browsers going
through the balancer while the test checks the lockout, sessions and a password change across
the nodes and then takes away, one at a time, node A, Redis and the directory provider.

Over the whole run no wrong password or unknown user gets a 200, no valid user or valid
session gets a 401, 403, 429 or a sign-in page, and no client gets a 5xx (while Redis is
away, sessions checked on a machine in the last 120 s stay valid there; a session nobody
checked, or one that ended before, gets 503). The counts of every phase are printed at the
end of the test session.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import ldap
import pytest

from devkit.apache import Apache, apache_available, make_readable
from devkit.balancer import Balancer, haproxy_available, remoteip_conf
from devkit.http import Response, basic, request
from devkit.redis import RedisServer
from devkit.slapd import SERVICE_DN, SERVICE_PASSWORD, STAFF, SUFFIX, USERS, Slapd, slapd_available
from tests import conftest
from tests.cli.helpers import authn
from tests.conftest import need, need_program
from tests.multi.load import Load
from tests.signin.test_signin_apache import Browser

pytestmark = [pytest.mark.apache, pytest.mark.slapd, pytest.mark.slow]

BALANCER_ADDRESS = "127.0.9.1"  #: the balancer's source address towards the nodes
NODES = {"a": ("127.0.1.1", "prefork"), "b": ("127.0.2.1", "event")}
THRESHOLD = 5
CACHE_TTL = 2
PATH = "/app/"
LOAD_USERS = {"bob": USERS["bob"], "jsmith": USERS["jsmith"], "dave": USERS["dave"]}


def node_body(root: Path, name: str, redis_url: str, ldap_url: str, password_file: Path) -> str:
    """The site of one node: the same options on every node (only the X-Node header differs)."""
    return f"""
Include "${{AUTHN_CONF}}/authn.conf"
PythonOption authn.lockout.store redis
PythonOption authn.lockout.redis {redis_url}
PythonOption authn.lockout.threshold {THRESHOLD}
PythonOption authn.cache.ttl {CACHE_TTL}
Include "${{AUTHN_CONF}}/authn-login.conf"
{remoteip_conf(BALANCER_ADDRESS)}
Header always set X-Node {name}
DocumentRoot "{root}"
<Directory "{root}">
    Require all granted
</Directory>
<Directory "{root}/app">
    Include "${{AUTHN_CONF}}/authn-form.conf"
    AuthName "App"
    PythonOption authn.login "form basic"
    PythonOption authn.source ldap
    PythonOption authn.ldap.url "{ldap_url}/{SUFFIX}?uid?sub"
    PythonOption authn.ldap.bind_dn "{SERVICE_DN}"
    PythonOption authn.ldap.bind_password_file "{password_file}"
    PythonOption authn.ldap.timeout 2
    Require valid-user
</Directory>
"""


class Topology:
    """Every server of the test; :meth:`close` stops them all (safe after a failure)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.binary = need_program("redis-server", "redis-server")
        self.started: list[RedisServer | Slapd | Apache | Balancer] = []  # stopped in reverse
        self.nodes: dict[str, Apache] = {}
        self.balancer: Balancer | None = None

    def start(self) -> None:
        # each server picks its free ports right before it starts (fewer chances of a clash)
        (self.base / "redis").mkdir()
        self.redis = RedisServer(self.binary, self.base / "redis", persistent=True)
        self.started.append(self.redis)
        self.redis.start()
        self.provider = Slapd(self.base / "provider", syncprov=True)
        self.started.append(self.provider)
        self.provider.start()
        self.consumer = Slapd(self.base / "consumer", provider=self.provider)
        self.started.append(self.consumer)
        self.consumer.start()
        secret = self.base / "secret"
        secret.mkdir()
        (secret / "bind-password").write_text(SERVICE_PASSWORD + "\n")
        (secret / "bind-password").chmod(0o644)
        root = self.base / "www"
        (root / "app").mkdir(parents=True)
        (root / "app" / "index.html").write_text("app content\n")
        (root / "up.html").write_text("up\n")
        make_readable(self.base)
        ldap_url = f"ldap://127.0.0.1:{self.provider.port} 127.0.0.1:{self.consumer.port}"
        for name, (host, mpm) in NODES.items():
            body = node_body(root, name, self.redis.url, ldap_url, secret / "bind-password")
            node = Apache(self.base / f"node-{name}", body, mpm=mpm, modules=("remoteip",), host=host)
            self.nodes[name] = node
            self.started.append(node)
            node.start()
        where = {name: f"{node.host}:{node.port}" for name, node in self.nodes.items()}
        self.balancer = Balancer(self.base / "balancer", where, source=BALANCER_ADDRESS, health="/up.html")
        self.started.append(self.balancer)
        self.balancer.start()

    @property
    def port(self) -> int:
        assert self.balancer is not None
        return self.balancer.port

    def close(self) -> None:
        for server in reversed(self.started):
            server.stop()

    def logs(self) -> str:
        """The nodes' error logs without the denial lines, and HAProxy's output."""
        text = ""
        for name, node in self.nodes.items():
            lines = [line for line in node.error_log().splitlines() if "authn: denied" not in line]
            text += f"--- node {name} error_log (denials left out) ---\n" + "\n".join(lines[-200:]) + "\n"
        return text + (f"--- haproxy ---\n{self.balancer.log()[-4000:]}" if self.balancer else "")


@pytest.fixture
def topology(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Topology]:
    for missing in (apache_available(), slapd_available(), haproxy_available()):
        need(missing)
    need(None if _module("redis") else "pip install redis (authn[redis])")
    topo = Topology(tmp_path_factory.mktemp("several-machines"))
    try:
        topo.start()
        yield topo
    finally:
        failed = getattr(request.node, "rep_call", None)
        if failed is not None and failed.failed:
            print(topo.logs())
        topo.close()


def _module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def direct(
    node: Apache,
    auth: str | bytes | None = None,
    *,
    source: str,
    headers: dict[str, bytes | str] | None = None,
) -> Response:
    """A request straight to a node (not through the balancer), from ``source``."""
    return request(node.port, PATH, auth=auth, source=source, host=node.host, headers=headers, timeout=10)


def until(check: Callable[[], bool], timeout: float, step: float = 0.05) -> float:
    """Seconds until ``check()`` is true (polled); raises AssertionError after ``timeout``."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not true within {timeout} s")
        time.sleep(step)
    return time.monotonic() - start


def sign_in(browser: Browser, user: str, password: str, *, post_to: Apache | None = None) -> Response:
    """Browser sign-in; the form is posted to ``post_to`` when given (another node)."""
    first = browser.send(PATH)
    assert first.status == 303, first
    page = browser.send(first.headers["location"])
    assert page.status == 200, page
    target = Browser(post_to.port, browser.jar, browser.source, post_to.host) if post_to else browser
    return target.send(
        "/authn/login", method="POST", form={**browser.form_of(page), "user": user, "password": password}
    )


def test_several_machines_behave_as_one(topology: Topology) -> None:
    topo = topology
    a, b = topo.nodes["a"], topo.nodes["b"]
    balancer = topo.balancer
    assert balancer is not None
    # signed-in browsers for the load, through the balancer
    browsers = [Browser(topo.port, source=f"127.0.105.{i + 1}") for i in range(2)]
    for browser in browsers:
        assert sign_in(browser, "bob", USERS["bob"]).status == 303
    load = Load(topo.port, PATH, LOAD_USERS, browsers).start()
    notes: list[str] = []
    phases: list[tuple[str, float]] = []

    def phase(name: str) -> None:
        load.phase = name
        phases.append((name, time.monotonic()))

    try:
        phase("steady")
        time.sleep(4)
        assert {a.node for a in load.of("steady")} >= {"a", "b"}, load.summary("steady")

        phase("checks")
        notes += check_lockout(topo, a, b)
        notes += check_sessions(topo, a, b)
        notes += check_password_change(topo, a, b)

        # --- node A killed under load, then back ------------------------------------------
        phase("node A killed")
        assert a.proc is not None
        os.killpg(a.proc.pid, signal.SIGKILL)
        a.proc.wait(10)
        a.stop()
        balancer.wait_until(lambda s: s["a"].startswith("DOWN"), 5)
        time.sleep(3)
        phase("node A back")
        started = time.monotonic()
        a.start()
        until(lambda: any(x.node == "a" for x in load.of("node A back")), 15)
        back = time.monotonic() - started
        # its fresh children warm up; then it takes its share again
        until(lambda: sum(x.node == "a" for x in load.of("node A back")) >= 300, 20, 0.2)
        share = time.monotonic() - started
        notes.append(
            f"node A started again: it answered through the balancer {back:.1f} s later, "
            f"300 answers after {share:.1f} s"
        )
        time.sleep(1)

        # --- Redis stopped under load, then back -------------------------------------------
        unchecked, ended = prepare_sessions_for_the_outage(a, b)
        phase("Redis down")
        topo.redis.stop()
        time.sleep(1.5)
        during = Browser(topo.port, source="127.0.106.1")
        first = during.send(PATH)  # 303 where this process had saved the sign-in context
        if first.status == 303:
            first = during.send(first.headers["location"])
        assert first.status == 503, first  # no sign-in while the session store is away
        for node in (a, b):
            # never checked by any process: not honoured; ended before the outage: not honoured
            for jar, source in ((unchecked, "127.0.61.1"), (ended, "127.0.61.2")):
                reply = Browser(node.port, dict(jar), source, node.host).send(PATH)
                assert reply.status == 503, (node.host, source, reply)
        time.sleep(2.5)
        for node in (a, b):
            assert "lockout store down, failing open" in node.error_log(), node.error_log()[-3000:]
        phase("Redis back")
        topo.redis.start()
        time.sleep(6)  # the lockout asks a store that failed again after 5 s
        fresh = Browser(topo.port, source="127.0.106.2")
        phase("after Redis")
        assert sign_in(fresh, "alice", USERS["alice"]).status == 303
        assert fresh.send(PATH).status == 200
        assert lock_through(topo.port, "127.0.51.9", "carol") == THRESHOLD  # the lockout is back on
        time.sleep(2)

        # --- the directory provider stopped under load -------------------------------------
        phase("provider down")
        topo.provider.stop_server()
        time.sleep(CACHE_TTL + 3)  # past the cache TTL: checks must reach the consumer
        phase("provider back")
        topo.provider.start_server()
        time.sleep(2)
        phase("end")
    finally:
        load.stop()

    ends = [at for _, at in phases[1:]] + [time.monotonic()]
    lines = []
    for (name, start), end in zip(phases, ends, strict=True):
        if name == "end":
            continue
        count = len(load.of(name))
        lines.append(
            f"  {name} ({end - start:.1f} s, {count / (end - start):.0f} req/s): {load.summary(name)}"
        )
    wrong = load.wrong_answers()
    report = [
        "several machines: answers through the balancer, per phase:",
        *lines,
        *(f"  {n}" for n in notes),
        f"  wrong answers: {len(wrong)}",
    ]
    conftest.notes.append("\n".join(report))
    print("\n".join(report))
    assert wrong == [], wrong[:20]
    # No client sees a 5xx: not when a node, Redis or the directory provider is away (Redis
    # down: the lockout fails open, and the browsers' sessions, checked on both machines in
    # the last 120 s, stay valid: docs/several-machines.md)
    for name, _ in phases:
        errors = [x for x in load.of(name) if x.status not in (200, 401, 429)]
        assert errors == [], (name, errors[:10])


def prepare_sessions_for_the_outage(a: Apache, b: Apache) -> tuple[dict[str, str], dict[str, str]]:
    """Two sessions whose cookies must not work while Redis is away: one no process has
    checked (signed in, never used), one signed out and seen as gone on both nodes."""
    unchecked = Browser(a.port, source="127.0.61.1", host=a.host)
    assert sign_in(unchecked, "alice", USERS["alice"]).status == 303
    ended = Browser(a.port, source="127.0.61.2", host=a.host)
    assert sign_in(ended, "alice", USERS["alice"]).status == 303
    cookie = dict(ended.jar)
    on = {node.host: Browser(node.port, dict(cookie), "127.0.61.2", node.host) for node in (a, b)}
    assert all(browser.send(PATH).status == 200 for browser in on.values())
    page = ended.send("/authn/logout")
    assert ended.send("/authn/logout", method="POST", form=ended.form_of(page)).status == 200
    until(lambda: all(browser.send(PATH).status == 303 for browser in on.values()), 5)
    return unchecked.jar, cookie


def lock_through(port: int, source: str, user: str) -> int:
    """Wrong passwords for ``user`` from ``source`` through the balancer until a 429; returns
    how many were checked (401) before it."""
    checked = 0
    for i in range(3 * THRESHOLD):
        reply = request(port, PATH, auth=basic(user, f"wrong-{i}"), source=source, timeout=10)
        if reply.status == 429:
            return checked
        assert reply.status == 401, reply
        checked += 1
    raise AssertionError(f"no 429 after {checked} failures")


def check_lockout(topo: Topology, a: Apache, b: Apache) -> list[str]:
    # failures spread over both nodes lock the pair at the same threshold as one node
    # (each node in turn, directly: the balancer's round robin is shared with the background
    # load, so it cannot promise that one client's few requests reach both nodes)
    nodes = set()
    source = "127.0.50.1"
    for i in range(THRESHOLD):
        reply = direct((a, b)[i % 2], basic("alice", f"nope-{i}"), source=source)
        assert reply.status == 401, reply
        nodes.add(reply.header("X-Node"))
    assert nodes == {"a", "b"}  # both nodes counted
    for _ in range(4):  # locked on both nodes, the right password included
        reply = request(topo.port, PATH, auth=basic("alice", USERS["alice"]), source=source, timeout=10)
        assert reply.status == 429, reply
    # a lock set through node A refuses on node B within a second
    source = "127.0.50.2"
    for i in range(THRESHOLD):
        assert direct(a, basic("alice", f"nope-{i}"), source=source).status == 401
    locked_at = time.monotonic()
    seconds = until(lambda: direct(b, basic("alice", USERS["alice"]), source=source).status == 429, 1.0)
    # a client talking to a node directly cannot pick its address with X-Forwarded-For
    forged = direct(b, basic("alice", USERS["alice"]), source=source, headers={"X-Forwarded-For": "10.1.2.3"})
    assert forged.status == 429
    assert direct(b, basic("alice", USERS["alice"]), source="127.0.50.3").status == 200  # only that address
    return [
        f"lockout: {THRESHOLD} failures spread over nodes a and b locked the pair; a lock set on A "
        f"refused on B after {seconds:.2f} s (limit 1 s; {time.monotonic() - locked_at:.2f} s with the check)"
    ]


def check_sessions(topo: Topology, a: Apache, b: Apache) -> list[str]:
    # a sign-in that starts on A (the redirect and the page) and posts to B
    browser = Browser(a.port, source="127.0.60.1", host=a.host)
    done = sign_in(browser, "alice", USERS["alice"], post_to=b)
    assert done.status == 303 and "authn_session" in browser.jar, done
    on_b = Browser(b.port, browser.jar, "127.0.60.1", b.host)
    assert browser.send(PATH).status == 200 and on_b.send(PATH).status == 200
    # logout on B: the cookie is refused on A within a second (a process trusts a checked
    # session for REMOTE_TRUST_SECONDS)
    token = browser.jar["authn_session"]
    page = on_b.send("/authn/logout")
    assert on_b.send("/authn/logout", method="POST", form=on_b.form_of(page)).status == 200
    replay = Browser(a.port, {"authn_session": token}, "127.0.60.2", a.host)
    logout = until(lambda: replay.send(PATH).status == 303, 5)  # 1 s, and slack for a busy machine
    # authn session revoke: holds on both nodes
    first = Browser(a.port, source="127.0.60.3", host=a.host)
    assert sign_in(first, "alice", USERS["alice"]).status == 303
    second = Browser(b.port, source="127.0.60.4", host=b.host)
    assert sign_in(second, "alice", USERS["alice"]).status == 303
    assert first.send(PATH).status == 200 and second.send(PATH).status == 200
    result = authn("session", "--redis", topo.redis.url, "revoke", "alice")
    assert result.returncode == 0 and b"revoked 2 session" in result.stderr, result.stderr
    revoked = until(lambda: first.send(PATH).status == 303 and second.send(PATH).status == 303, 5)
    cross = [
        Browser(b.port, first.jar, "127.0.60.3", b.host).send(PATH).status,
        Browser(a.port, second.jar, "127.0.60.4", a.host).send(PATH).status,
    ]
    assert cross == [303, 303]
    return [
        f"sessions: a sign-in started on A and posted to B is valid on both; a logout on B refused "
        f"on A after {logout:.2f} s; revoke refused on both after {revoked:.2f} s"
    ]


def check_password_change(topo: Topology, a: Apache, b: Apache) -> list[str]:
    dn = f"uid=carol,{STAFF}"
    for node, source in ((a, "127.0.70.1"), (b, "127.0.70.2")):
        assert direct(node, basic("carol", USERS["carol"]), source=source).status == 200  # cached now
    conn = ldap.initialize(topo.provider.ldap_url)
    conn.simple_bind_s(topo.provider.root_dn, topo.provider.root_pw)
    try:
        conn.passwd_s(dn, None, "carol-new")
    finally:
        conn.unbind_s()
    changed = time.monotonic()
    topo.consumer.wait_for_bind(dn, "carol-new", 5)
    took = []
    for node, source in ((a, "127.0.70.1"), (b, "127.0.70.2")):
        until(
            lambda n=node, s=source: direct(n, basic("carol", USERS["carol"]), source=s).status == 401,
            CACHE_TTL + 3,  # the TTL, and slack for a busy machine
            0.1,
        )
        took.append(time.monotonic() - changed)
        assert direct(node, basic("carol", "carol-new"), source=source).status == 200
    return [
        f"password change on the provider: the old password refused on A after {took[0]:.1f} s and on B "
        f"after {took[1]:.1f} s (cache TTL {CACHE_TTL} s); the new one accepted on both"
    ]
