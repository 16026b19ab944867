"""Benchmark (not a test): valid users' throughput with and without a flood of wrong passwords.

    .venv/bin/python -m bench.flood [seconds] [scheme]

Starts a real Apache (prefork) with mod_remoteip trusting 127.0.0.1, so that two wrk runs on
loopback stand for two client addresses (X-Client-IP). Prints requests per second of the
valid users, and the status codes each side got, for lockout on and off.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from authn import hashes
from devkit.apache import Apache, make_readable
from devkit.site import basic, site_body

REMOTEIP = (
    "RemoteIPHeader X-Client-IP\nRemoteIPInternalProxy 127.0.0.1\n"
    "StartServers 8\nMinSpareServers 8\nMaxSpareServers 16"
)


def wrk(url: str, seconds: int, headers: dict[str, str]) -> subprocess.Popen[str]:
    args = ["wrk", "-t1", "-c4", f"-d{seconds}s", "--latency"]
    for k, v in headers.items():
        args += ["-H", f"{k}: {v}"]
    return subprocess.Popen([*args, url], stdout=subprocess.PIPE, text=True)


def rps(output: str) -> float:
    found = re.search(r"Requests/sec:\s+([\d.]+)", output)
    return float(found.group(1)) if found else 0.0


def non2xx(output: str) -> int:
    found = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return int(found.group(1)) if found else 0


def apache_cpu_seconds(apache: Apache) -> float:
    """User+system CPU of the Apache parent and its live children (prefork children stay
    alive here: Min/MaxSpareServers keep them), from /proc: robust on a busy machine."""
    assert apache.proc is not None
    pids = [str(apache.proc.pid)]
    pids += Path(f"/proc/{pids[0]}/task/{pids[0]}/children").read_text().split()
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def cpu_per_request(apache: Apache, seconds: int, headers: dict[str, str]) -> tuple[float, int]:
    """Apache CPU microseconds per request, and the number of requests, for one wrk run."""
    log = apache.workdir / "logs" / "access.log"
    lines_before = log.read_text().count("\n")
    cpu_before = apache_cpu_seconds(apache)
    wrk(f"{apache.url}/private/", seconds, headers).communicate()
    cpu = apache_cpu_seconds(apache) - cpu_before
    requests = log.read_text().count("\n") - lines_before
    return cpu / max(requests, 1) * 1e6, requests


def main() -> None:
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    scheme = sys.argv[2] if len(sys.argv) > 2 else "bcrypt"
    cost = 5 if scheme == "bcrypt" else None
    work = Path(tempfile.mkdtemp(prefix="authn-flood-"))
    make_readable(work)
    users = work / "users"
    users.write_text(
        f"bob:{hashes.make_hash(b'builder', scheme, cost)}\n"
        f"alice:{hashes.make_hash(b'wonderland', scheme, cost)}\n"
    )
    users.chmod(0o644)
    valid = {"Authorization": basic("bob", "builder"), "X-Client-IP": "192.0.2.10"}
    flood = {"Authorization": basic("alice", "guess"), "X-Client-IP": "192.0.2.66"}
    print(f"scheme {scheme}, {seconds} s per run, wrk -t1 -c4 per side, 2 cores shared")
    for lockout in ("on", "off"):
        apache = Apache(
            work / f"apache-{lockout}",
            site_body(work / "www", users, f"PythonOption authn.lockout {lockout}", status=False),
            modules=("remoteip",),
            server_conf=REMOTEIP,
        ).start()
        try:
            url = f"{apache.url}/private/"
            alone = wrk(url, seconds, valid).communicate()[0]
            attacked_p = wrk(url, seconds, valid)
            flood_p = wrk(url, seconds, flood)
            attacked, flooding = attacked_p.communicate()[0], flood_p.communicate()[0]
            valid_cpu, valid_n = cpu_per_request(apache, seconds, valid)
            flood_cpu, flood_n = cpu_per_request(apache, seconds, flood)
            log = (work / f"apache-{lockout}" / "logs" / "access.log").read_text()
            codes = re.findall(r'" (\d{3}) ', log)
        finally:
            apache.stop()
        print(
            f"lockout {lockout}: valid alone {rps(alone):.0f} req/s (non-2xx {non2xx(alone)}); "
            f"under flood {rps(attacked):.0f} req/s (non-2xx {non2xx(attacked)}) = "
            f"{rps(attacked) / max(rps(alone), 1):.0%}; flood {rps(flooding):.0f} req/s; "
            f"statuses {dict(sorted((c, codes.count(c)) for c in set(codes)))}"
        )
        print(
            f"lockout {lockout}: Apache CPU per valid request {valid_cpu:.0f} us ({valid_n} "
            f"requests); per flood request {flood_cpu:.0f} us ({flood_n} requests)"
        )


if __name__ == "__main__":
    main()
