"""Machine-wide counters: a prefork Apache whose children come and go (and a graceful
restart) still gives sums that add up exactly and never go down, whichever child answers."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from authn import __version__
from authn.metrics import NAMES, Counters
from devkit.apache import Apache
from devkit.site import USERS, basic, get, site_body, status_page, write_users

StartApache = Callable[..., Apache]
#: several children, each replaced after a few connections: counts of dead children must stay
CHURN = (
    "StartServers 4\nMinSpareServers 4\nMaxSpareServers 8\nServerLimit 8\nMaxRequestWorkers 8\n"
    "MaxConnectionsPerChild 5"
)


def test_counters_of_exited_processes_are_kept(tmp_path: Path) -> None:
    path = str(tmp_path / "metrics")
    for _ in range(6):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            counters = Counters(path)
            for _ in range(100):
                counters.add("answers_granted")
            counters.add("denials_bad_password", 3)
            os._exit(0)
        os.waitpid(pid, 0)
    totals = Counters(path).totals()
    assert totals["answers_granted"] == 600 and totals["denials_bad_password"] == 18
    assert set(totals) == set(NAMES)


def _series(text: str) -> dict[str, float]:
    """``name{labels}`` -> value for the machine-wide series (no pid label)."""
    found = {}
    for line in text.splitlines():
        m = re.match(r"^(authn_\w+)(\{[^}]*\})? (\S+)$", line)
        if m and 'pid="' not in (m.group(2) or ""):
            found[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return found


@pytest.mark.apache
def test_counts_add_up_over_children_that_come_and_go(start_apache: StartApache, scratch: Path) -> None:
    users = scratch / "users"
    write_users(users, USERS)
    options = "PythonOption authn.lockout.threshold 3"
    apache = start_apache(site_body(scratch / "www", users, options), server_conf=CHURN)
    first = _series(status_page(apache.port, prometheus=True))
    assert first[f'authn_build_info{{version="{__version__}"}}'] == 1
    assert first["authn_metrics_machine_wide"] == 1

    def send(case: tuple[str, str, str]) -> int:
        user, password, source = case
        return get(apache.port, authorization=basic(user, password), source=source).status

    good = [("alice", USERS["alice"].decode(), f"127.0.0.{10 + i % 5}") for i in range(30)]
    wrong = [("alice", "nope", f"127.0.1.{i}") for i in range(12)]  # one per address: no lock
    unknown = [("mallory", "x", f"127.0.2.{i}") for i in range(7)]
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(send, good + wrong + unknown))
    assert statuses == [200] * 30 + [401] * 19
    for _ in range(3):  # three failures lock bob out of 127.0.3.1; then two 429s
        assert send(("bob", "nope", "127.0.3.1")) == 401
    assert [send(("bob", USERS["bob"].decode(), "127.0.3.1")) for _ in range(2)] == [429, 429]
    apache.graceful()  # the parent stays: so do the counts
    scrapes = [_series(status_page(apache.port, prometheus=True)) for _ in range(6)]

    def delta(scrape: dict[str, float], name: str) -> float:
        return scrape.get(name, 0) - first.get(name, 0)

    for n, scrape in enumerate(scrapes, start=1):
        assert delta(scrape, 'authn_answers_total{outcome="granted"}') == 30 + n  # + the scrapes
        assert delta(scrape, 'authn_answers_total{outcome="refused"}') == 22
        assert delta(scrape, 'authn_answers_total{outcome="throttled"}') == 2
        assert delta(scrape, 'authn_denials_total{reason="bad password"}') == 15
        assert delta(scrape, 'authn_denials_total{reason="unknown user"}') == 7
        assert delta(scrape, 'authn_denials_total{reason="locked out"}') == 2
        hits = sum(delta(scrape, f"authn_cache_{k}_total") for k in ("local_hits", "shared_hits", "misses"))
        assert hits >= 30  # every good password looked the cache up
    pids = set(re.findall(r'pid="(\d+)"', status_page(apache.port, prometheus=True)))
    assert len(pids) == 1  # the per-child series still say which child answered
    page = status_page(apache.port)
    assert page.startswith(f"authn {__version__} status\n")
