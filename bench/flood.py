"""The flood figure: valid users' throughput while one address guesses at a fixed rate.

An attacker who may use all the CPU Apache needs measures the machine, not authn; so the
attacker here sends a fixed number of guesses a second (:data:`ATTACK_RATE`, wrong passwords
for the 1,000 users in turn, from one address) while the valid users (the 1,000 users, right
passwords, cache on, from another address) go as fast as they can. Reported: the valid users'
requests per second alone and under the attack (the target: >= 80% of alone, and only 200s),
the attack rate reached, and what the attacker got (401 while its failures count, then 429
from the lockout, which answers from memory).

A real Apache (the benchmark's MPM settings) with mod_remoteip trusting 127.0.0.1: two wrk
runs on loopback stand for two client addresses (``X-Client-IP``). Used by ``python -m bench``
(:func:`measure`); alone: ``python -m bench.flood [prefork|event] [seconds] [rate]``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ATTACK_RATE = 2000  #: guesses per second from the attacking address
ATTACK_CONNECTIONS = 4  #: each holds a prefork child (wrk waits its pause on an open connection)
ANSWER_MS = 0.25  #: about what a 429 takes: each connection's pause is shorter by that
VALID_ADDRESS = "192.0.2.10"
ATTACK_ADDRESS = "192.0.2.66"
REMOTEIP = "RemoteIPHeader X-Client-IP\nRemoteIPInternalProxy 127.0.0.1\n"


@dataclass
class Flood:
    mpm: str
    alone_rps: float
    attacked_rps: float
    valid_bad: int  #: non-2xx answers the valid users got (alone + attacked): must be 0
    attack_rps: float
    attack_statuses: dict[str, int]

    @property
    def kept(self) -> float:
        return self.attacked_rps / self.alone_rps if self.alone_rps else 0.0


def _wrk(url: str, seconds: int, connections: int, address: str, script: list[str]) -> subprocess.Popen[str]:
    threads = min(2, connections)
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
           "-H", f"X-Client-IP: {address}", "-s", script[0], url, "--", *script[1:]]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)


def _number(pattern: str, text: str) -> float:
    found = re.search(pattern, text)
    return float(found.group(1)) if found else 0.0


def measure(root: Path, mpm: str, server_conf: str, users: Path, tokens: Path, seconds: int) -> Flood:
    """Start the Apache, run the valid users alone, then with the attack; stop it."""
    from devkit.apache import Apache
    from devkit.site import site_body

    wrong = root / f"flood-wrong-tokens-{mpm}"
    if not wrong.exists():
        import base64

        lines = tokens.read_text().split()
        names = [base64.b64decode(line).decode().split(":")[0] for line in lines if line != "Basic"]
        wrong.write_text(
            "".join("Basic " + base64.b64encode(f"{n}:guess".encode()).decode() + "\n" for n in names)
        )
    apache = Apache(
        root / f"flood-{mpm}",
        site_body(root / f"www-flood-{mpm}", users, status=False),
        mpm=mpm,
        modules=("remoteip",),
        server_conf=server_conf + REMOTEIP,
        log_level="error",
    ).start()
    try:
        url = f"{apache.url}/private/"
        rotate = [str(HERE / "rotate.lua"), str(tokens)]
        _wrk(url, 3, 20, VALID_ADDRESS, rotate).communicate()  # warm: every user cached
        alone = _wrk(url, seconds, 20, VALID_ADDRESS, rotate).communicate()[0]
        time.sleep(0.5)
        pause = str(max(0.1, 1000 * ATTACK_CONNECTIONS / ATTACK_RATE - ANSWER_MS))
        attack_p = _wrk(
            url,
            seconds + 2,
            ATTACK_CONNECTIONS,
            ATTACK_ADDRESS,
            [str(HERE / "pace.lua"), pause, str(wrong)],
        )
        time.sleep(1)  # the attack runs at its pace before the valid users are measured
        attacked = _wrk(url, seconds, 20, VALID_ADDRESS, rotate).communicate()[0]
        attack = attack_p.communicate()[0]
        log = (apache.workdir / "logs" / "access.log").read_text()
    finally:
        apache.stop()
    statuses: dict[str, int] = {}
    for address, status in re.findall(r"^(\S+) \S+ \[[^]]*\] \"[^\"]*\" (\d{3}) ", log, re.M):
        if address == ATTACK_ADDRESS:
            statuses[status] = statuses.get(status, 0) + 1
    return Flood(
        mpm=mpm,
        alone_rps=_number(r"Requests/sec:\s+([\d.]+)", alone),
        attacked_rps=_number(r"Requests/sec:\s+([\d.]+)", attacked),
        valid_bad=int(_number(r"Non-2xx or 3xx responses: (\d+)", alone))
        + int(_number(r"Non-2xx or 3xx responses: (\d+)", attacked)),
        attack_rps=_number(r"Requests/sec:\s+([\d.]+)", attack),
        attack_statuses=dict(sorted(statuses.items())),
    )


def report(floods: list[Flood]) -> str:
    lines = [
        "## Valid users while one address guesses",
        "",
        f"The attacker sends {ATTACK_RATE} wrong passwords a second (the 1,000 users in turn, "
        f"{ATTACK_CONNECTIONS} keep-alive connections at a fixed pace) from one address; the valid users "
        "(the 1,000 users, right passwords, cache on, wrk -c20) go as fast as they can from "
        "another. Target: the valid users keep >= 80% of their throughput and get only 200s.",
        "",
        "| MPM | valid alone req/s | valid under attack req/s | kept | valid non-2xx | attack req/s "
        "| attacker's answers |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for f in floods:
        lines.append(
            f"| {f.mpm} | {f.alone_rps:.0f} | {f.attacked_rps:.0f} | **{f.kept:.0%}** "
            f"({'met' if f.kept >= 0.8 and not f.valid_bad else 'MISSED'}) | {f.valid_bad} | "
            f"{f.attack_rps:.0f} | {', '.join(f'{k}: {v}' for k, v in f.attack_statuses.items())} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    from bench import run

    mpm = sys.argv[1] if len(sys.argv) > 1 else "prefork"
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    global ATTACK_RATE
    ATTACK_RATE = int(sys.argv[3]) if len(sys.argv) > 3 else ATTACK_RATE
    root = Path(tempfile.mkdtemp(prefix="authn-flood-"))
    try:
        files = run.make_files(root, 0)
        from devkit.apache import make_readable

        make_readable(root)
        conf = run.PREFORK_CONF if mpm == "prefork" else run.EVENT_CONF
        print(report([measure(root, mpm, conf, files.users, files.tokens, seconds)]))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
