"""Per-request cost of authn's uncached LDAP path against native mod_authnz_ldap with its
caches off (LDAPCacheEntries 0, LDAPOpCacheEntries 0), on the same slapd and the same Apache.

Both locations search for the user as the same service account and bind as the user on
every request. Run: .venv/bin/python bench/ldap_vs_native.py [prefork|event] [seconds]
Needs wrk, slapd, Apache with mod_python; prints requests per second from wrk.
"""

from __future__ import annotations

import base64
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from devkit.apache import Apache, make_readable
from devkit.slapd import SERVICE_DN, SERVICE_PASSWORD, USERS, Slapd


def wrk(url: str, login: str, seconds: int) -> float:
    token = base64.b64encode(f"{login}:{USERS[login]}".encode()).decode()
    out = subprocess.run(
        ["wrk", "-t1", "-c4", f"-d{seconds}s", "-H", f"Authorization: Basic {token}", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"errors while measuring {url}:\n{out}")
    match = re.search(r"Requests/sec:\s+([0-9.]+)", out)
    assert match, out
    return float(match.group(1))


def main() -> None:
    mpm = sys.argv[1] if len(sys.argv) > 1 else "event"
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        slapd = Slapd(work / "slapd")
        slapd.start()
        try:
            secret = work / "secret"
            secret.mkdir()
            (secret / "pw").write_text(SERVICE_PASSWORD + "\n")
            make_readable(secret / "pw")
            docroot = work / "htdocs"
            url = f"{slapd.ldap_url}/dc=example,dc=org?uid?sub"
            for name in ("none", "authn", "native"):
                (docroot / name).mkdir(parents=True)
                (docroot / name / "index.html").write_text("x" * 1024)
            body = f"""
DocumentRoot "{docroot}"
Include "${{AUTHN_CONF}}/authn.conf"
LDAPCacheEntries 0
LDAPOpCacheEntries 0
<Directory "{docroot}">
    Require all granted
</Directory>
<Directory "{docroot}/authn">
    Include "${{AUTHN_CONF}}/authn-basic.conf"
    PythonOption authn.source ldap
    PythonOption authn.ldap.url "{url}"
    PythonOption authn.ldap.bind_dn "{SERVICE_DN}"
    PythonOption authn.ldap.bind_password_file "{secret / "pw"}"
    Require valid-user
</Directory>
<Directory "{docroot}/native">
    AuthType Basic
    AuthName "native"
    AuthBasicProvider ldap
    AuthLDAPURL "{url}"
    AuthLDAPBindDN "{SERVICE_DN}"
    AuthLDAPBindPassword "{SERVICE_PASSWORD}"
    Require valid-user
</Directory>
"""
            apache = Apache(work / "apache", body, mpm=mpm, modules=("ldap", "authnz_ldap"))
            apache.start()
            try:
                results = {}
                for name in ("none", *("authn", "native") * 4):
                    wrk(f"{apache.url}/{name}/", "alice", 1)  # warm up
                    results.setdefault(name, []).append(wrk(f"{apache.url}/{name}/", "alice", seconds))
                for name, values in results.items():
                    runs = " ".join(f"{v:6.0f}" for v in values)
                    print(f"{mpm:8} {name:7} median {statistics.median(values):6.0f} req/s ({runs})")
            finally:
                apache.stop()
        finally:
            slapd.stop()


if __name__ == "__main__":
    main()
