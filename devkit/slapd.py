"""A throwaway OpenLDAP slapd for the tests, built on python-ldap's ``slapdtest.SlapdObject``.

* Listens on ``ldap://127.0.0.1:<port>`` (StartTLS offered) and ``ldaps://127.0.0.1:<port>``,
  both on free ports that are kept across :meth:`Slapd.stop_server` / :meth:`start_server`,
  so a test can take the directory away and bring it back at the same address.
* TLS: a CA and a server certificate (``127.0.0.1`` and ``localhost``) made with the
  ``openssl`` command, plus an unrelated CA (``wrong_ca``) to test that verification fails.
* Schemas core, cosine, inetorgperson and nis; the memberof overlay maintains ``memberOf``
  (loaded with ldapadd after start, so the overlay sees the groups).
* ACLs like a production directory: passwords can only be used to bind, everything else is
  readable.
* Replication, for the tests of several machines: ``Slapd(folder, syncprov=True)`` is a
  provider (the syncprov overlay, entryCSN and entryUUID indexed); ``Slapd(folder,
  provider=that)`` is a syncrepl consumer (refreshAndPersist, bound as the provider's root DN,
  retrying every second while the provider is away): it starts empty, and :meth:`Slapd.start`
  returns once it holds the provider's entries.

``FIXTURE_LDIF`` is the directory the tests use; ``USERS`` holds its logins and passwords.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from pathlib import Path

import ldap
import slapdtest

from devkit.processes import DIE_WITH_PARENT

SLAPD_BIN = "/usr/sbin/slapd"
SCHEMA_DIR = "/etc/ldap/schema"
SUFFIX = "dc=example,dc=org"
PEOPLE = f"ou=people,{SUFFIX}"
STAFF = f"ou=staff,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
SERVICE_DN = f"cn=apache,ou=services,{SUFFIX}"
SERVICE_PASSWORD = "service secret"

#: login -> password (str; sent as UTF-8)
USERS = {
    "alice": "alice-pw",
    "bob": "bob-pw",
    "carol": "carol-pw",
    "dave": "dave-pw",
    "jsmith": "smith-pw",
    "jürgen": "pässwörd€",
    "twin": "twin-pw",
}

_ACCESS = r"""
olcAccess: {0}to attrs=userPassword by anonymous auth by * none
olcAccess: {1}to * by * read
"""

# added after the schemas: the overlay needs the member attribute type
_OVERLAY = r"""dn: olcOverlay=memberof,olcDatabase={1}mdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcMemberOf
olcOverlay: memberof
olcMemberOfRefInt: TRUE
"""

# a provider: consumers follow its changes (added after the schemas, like the memberof overlay)
_SYNCPROV = r"""dn: olcOverlay=syncprov,olcDatabase={1}mdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcSyncProvConfig
olcOverlay: syncprov
olcSpCheckpoint: 100 10
"""


def _entries() -> str:
    people = [
        ("uid=alice", PEOPLE, "alice", "Alice Liddell", "Liddell", "alice@example.org"),
        ("uid=bob", PEOPLE, "bob", "Bob Builder", "Builder", "bob@example.org"),
        ("cn=Smith\\, John", PEOPLE, "jsmith", "Smith, John", "Smith", "jsmith@example.org"),
        ("uid=jürgen", PEOPLE, "jürgen", "Jürgen Müller", "Müller", "juergen@example.org"),
        ("uid=twin", PEOPLE, "twin", "Twin One", "One", "twin1@example.org"),
        ("uid=carol", STAFF, "carol", "Carol Danvers", "Danvers", "carol@example.org"),
        ("uid=dave", STAFF, "dave", "Dave Lister", "Lister", "dave@example.org"),
        ("uid=twin", STAFF, "twin", "Twin Two", "Two", "twin2@example.org"),
    ]
    out = [
        f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example",
    ]
    for ou in ("people", "staff", "groups", "services"):
        out.append(f"dn: ou={ou},{SUFFIX}\nobjectClass: organizationalUnit\nou: {ou}")
    out.append(
        f"dn: {SERVICE_DN}\nobjectClass: applicationProcess\nobjectClass: simpleSecurityObject\n"
        f"cn: apache\nuserPassword: {SERVICE_PASSWORD}"
    )
    # a referral, so that searches from the suffix return a continuation reference (as
    # Active Directory's domain root does)
    out.append(
        f"dn: ou=elsewhere,{SUFFIX}\nobjectClass: referral\nobjectClass: extensibleObject\n"
        f"ou: elsewhere\nref: ldap://ldap.elsewhere.example/ou=elsewhere,{SUFFIX}"
    )
    for rdn, ou, uid, cn, sn, mail in people:
        out.append(
            f"dn: {rdn},{ou}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {cn}\nsn: {sn}\n"
            f"mail: {mail}\nuserPassword: {USERS[uid]}"
        )

    def group(cn: str, cls: str, attr: str, members: list[str], extra: str = "") -> str:
        lines = [f"dn: cn={cn},{GROUPS}", f"objectClass: {cls}", f"cn: {cn}"]
        lines += [f"{attr}: {m}" for m in members]
        return "\n".join(lines) + extra

    out += [
        group("admins", "groupOfNames", "member", [f"uid=alice,{PEOPLE}"]),
        group(
            "staff",
            "groupOfUniqueNames",
            "uniqueMember",
            [f"uid=carol,{STAFF}", f"cn=Smith\\, John,{PEOPLE}"],
        ),
        group("web", "posixGroup", "memberUid", ["bob", "dave"], "\ngidNumber: 5000"),
        # nesting: alice is in admins, admins in mid, mid in top
        group("mid", "groupOfNames", "member", [f"cn=admins,{GROUPS}"]),
        group("top", "groupOfNames", "member", [f"cn=mid,{GROUPS}"]),
        # a cycle: loop-a <-> loop-b, with carol in loop-b
        group("loop-a", "groupOfNames", "member", [f"cn=loop-b,{GROUPS}", f"cn=top,{GROUPS}"]),
        group("loop-b", "groupOfNames", "member", [f"cn=loop-a,{GROUPS}", f"uid=carol,{STAFF}"]),
        group("nobody", "groupOfNames", "member", [SERVICE_DN]),
    ]
    return "\n\n".join(out) + "\n"


FIXTURE_LDIF = _entries()


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(folder: Path) -> dict[str, Path]:
    """A CA, a server certificate it signs (127.0.0.1, localhost) and an unrelated CA."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("ca", "wrong_ca"):
        _openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", f"/CN=authn test {name}", "-keyout", f"{name}.key", "-out", f"{name}.pem",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            cwd=folder,
        )  # fmt: skip
    (folder / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
    )
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
        "-keyout", "server.key", "-out", "server.csr", cwd=folder,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "server.ext", "-out", "server.pem",
        cwd=folder,
    )  # fmt: skip
    for pem in ("ca.pem", "wrong_ca.pem", "server.pem"):
        (folder / pem).chmod(0o644)
    return {
        "ca": folder / "ca.pem",
        "wrong_ca": folder / "wrong_ca.pem",
        "cert": folder / "server.pem",
        "key": folder / "server.key",
    }


def slapd_available() -> str | None:
    """None when slapd and its tools are installed; else what is missing."""
    if not os.path.exists(SLAPD_BIN):
        return "slapd is not installed (apt-get install slapd ldap-utils)"
    if not os.path.exists("/usr/bin/ldapadd"):
        return "ldap-utils is not installed (apt-get install ldap-utils)"
    if not os.path.isdir(SCHEMA_DIR):
        return f"{SCHEMA_DIR} is missing (apt-get install slapd)"
    return None


class Slapd(slapdtest.SlapdObject):  # type: ignore[misc]  # python-ldap ships no types
    """One slapd in ``workdir``; see the module docstring."""

    suffix = SUFFIX
    root_cn = "admin"
    root_pw = "admin secret"
    slapd_loglevel = "0"
    openldap_schema_files = ("core.ldif", "cosine.ldif", "inetorgperson.ldif", "nis.ldif")
    SCHEMADIR = SCHEMA_DIR

    def __init__(self, workdir: Path, *, syncprov: bool = False, provider: Slapd | None = None) -> None:
        self.syncprov = syncprov
        self.provider = provider
        self.TMPDIR = str(workdir)
        os.environ.setdefault("SBIN", "/usr/sbin")
        super().__init__()
        self._log.setLevel(logging.WARNING)
        self.PATH_SLAPD = SLAPD_BIN
        self.certs = make_certificates(workdir / "certs")
        self.cafile = str(self.certs["ca"])
        self.servercert = str(self.certs["cert"])
        self.serverkey = str(self.certs["key"])
        self.ldaps_port = self._avail_tcp_port()
        self.slapd_conf_template = (
            slapdtest.SlapdObject.slapd_conf_template.replace(
                "olcModuleLoad: back_%(database)s",
                "olcModuleLoad: back_%(database)s\nolcModuleLoad: memberof"
                + ("\nolcModuleLoad: syncprov" if syncprov else ""),
            ).rstrip("\n")
            + "\n"
            + _ACCESS.lstrip("\n")
        )

    @property
    def ldap_url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.ldaps_port}"

    def _start_slapd(self) -> None:
        urls = [self.ldap_uri, f"ldaps://127.0.0.1:{self.ldaps_port}/"]
        if self.ldapi_uri:
            urls.append(self.ldapi_uri)
        # dies with us, even when we are killed (slapdtest's atexit stop cannot run then)
        args = [*DIE_WITH_PARENT, self.PATH_SLAPD, "-F", self._slapd_conf, "-h", " ".join(urls), "-d", "0"]
        self._proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            if self._proc.poll() is not None:
                self._stopped()
                raise RuntimeError("slapd exited before opening its port")
            try:
                self.ldapwhoami()
            except RuntimeError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.1)
            else:
                return

    def gen_config(self) -> str:
        """slapdtest's config, plus what replication needs on the database entry (its last)."""
        extra = []
        if self.syncprov or self.provider is not None:
            extra.append("olcDbIndex: entryCSN,entryUUID eq")
        if self.provider is not None:
            source = self.provider
            extra.append(
                f"olcSyncrepl: rid=001 provider={source.ldap_url} bindmethod=simple "
                f'binddn="{source.root_dn}" credentials="{source.root_pw}" searchbase="{SUFFIX}" '
                'type=refreshAndPersist retry="1 +" timeout=3 network-timeout=2'
            )
        return str(super().gen_config()).rstrip("\n") + "\n" + "".join(line + "\n" for line in extra)

    def _write_config(self) -> None:
        super()._write_config()
        if self.provider is None:  # a consumer copies the provider's memberOf values
            self.slapadd(_OVERLAY, ["-n0"])
        if self.syncprov:
            self.slapadd(_SYNCPROV, ["-n0"])

    def start(self) -> None:
        super().start()
        if self.provider is None:
            self.ldapadd(FIXTURE_LDIF)
        else:
            self.wait_for_bind(f"uid=alice,{PEOPLE}", USERS["alice"])

    def wait_for_bind(self, dn: str, password: str, timeout: float = 20.0) -> float:
        """Wait until ``dn`` can bind here with ``password`` (a consumer has caught up);
        returns the seconds it took; raises TimeoutError."""
        start = time.monotonic()
        while True:
            conn = ldap.initialize(self.ldap_url)
            conn.set_option(ldap.OPT_NETWORK_TIMEOUT, 2)
            try:
                conn.simple_bind_s(dn, password)
                return time.monotonic() - start
            except (ldap.INVALID_CREDENTIALS, ldap.SERVER_DOWN):
                if time.monotonic() - start >= timeout:
                    raise TimeoutError(f"{dn} cannot bind at {self.ldap_url} after {timeout} s") from None
                time.sleep(0.05)
            finally:
                conn.unbind_s()

    def stop_server(self) -> None:
        """Stop slapd, keep its data and ports (``start_server`` brings it back)."""
        if self._proc is not None:
            self._proc.terminate()
            self.wait()

    def start_server(self) -> None:
        self._start_slapd()
