"""The ``ldap`` source: users and groups in an LDAP directory or Active Directory.

Checking a password (:meth:`Directory.check`)
    *Search, then bind*: the service connection searches ``(&(filter)(attr=login))`` under
    the URL's base DN; exactly one entry must match (none: unknown user; more than one:
    logged as ambiguous, unknown user); then the user's DN is bound with the password on a
    separate connection. An unknown user costs one failed bind too (a DN that does not
    exist, a fixed password), so it takes the time of a wrong password. *Direct bind*
    (``authn.ldap.bind_template``): the login is put in the template and bound at once, for
    directories that forbid searching; the entry is then read as the user. An empty password
    is refused before any bind (an empty simple bind is an anonymous bind, which succeeds).
    Logins are escaped for filters (RFC 4515) and DNs (RFC 4514). Active Directory accounts
    that are disabled, locked or expired (``userAccountControl``, ``accountExpires``) are
    never granted.

A granted verdict carries
    ``attrs``: the URL's attributes, ``authn.ldap.attributes`` and the REMOTE_USER
    attribute, first value of each (as mod_authnz_ldap exports them), plus ``dn``, the
    user's DN; ``groups``: the DNs of the user's ``memberOf`` values.

Groups (:meth:`Directory.in_any_group`)
    A required group is named by DN, or by its ``cn`` under ``authn.ldap.group_base``.
    Membership is found by searching groups (under ``group_base``, else the URL's base)
    whose ``member``/``uniqueMember`` is the user's DN or whose ``memberUid`` is the login
    (posixGroup), plus the user's ``memberOf``, then groups containing those groups, level
    by level to ``authn.ldap.group_depth``; a group seen twice is not searched again, so a
    cycle ends. With ``authn.ldap.group_in_chain on`` (Active Directory) one search with
    the in-chain matching rule does the nesting on the server.

Faults
    A file an option names (``authn.ldap.bind_password_file``, ``authn.ldap.ca_file``) that
    cannot be read raises :class:`SourceUnavailable` with status 500 and reason ``file
    unreadable``, naming the option, the path, the OS error and the fix; it is read again
    on the next request, so fixing its permissions needs no restart. A directory that
    cannot answer (every host down, TLS failure, a timeout, a base DN that does not exist,
    a refused service bind) raises :class:`SourceUnavailable` with status 503 and a message
    naming the host and the reason. It is never turned into a denial.

One :class:`Directory` exists per distinct configuration in a process
(:func:`directory_for`), with its pool of warm connections (:mod:`authn.sources.ldap.pool`).
No password and no verdict is cached here.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import ldap

from authn.errors import ConfigError, DirectoryDown, SourceUnavailable, UnreadableFile, probe_file
from authn.httpd.logtext import quote
from authn.settings import LdapSettings, Settings
from authn.sources.ldap.filters import (
    account_problem,
    bind_failure_reason,
    fold_login,
    group_name,
    in_chain_filter,
    is_under,
    member_filter,
    normalize_dn,
    template_bind_name,
    user_filter,
)
from authn.sources.ldap.pool import ConnectionConfig, Pool, Slot, describe
from authn.sources.ldap.url import LdapURL
from authn.verdict import Outcome, Reason, Verdict

log = logging.getLogger("authn")

SOURCE_NAME = "ldap"
#: the bind an unknown user costs (see Directory._dummy_bind): no such entry, not a password
DUMMY_RDN = "cn=authn-no-such-user"
DUMMY_PASSWORD = b"authn: unknown user, not a password"
OUTAGE_STATUS = 503
_SCOPES = {"base": ldap.SCOPE_BASE, "one": ldap.SCOPE_ONELEVEL, "sub": ldap.SCOPE_SUBTREE}
_ACCOUNT_ATTRS = ("userAccountControl", "accountExpires", "memberOf")
#: what changes with an entry's password, most precise first (see Directory.credential_mark)
_CREDENTIAL_MARKS = ("pwdChangedTime", "pwdLastSet", "entryCSN", "uSNChanged", "modifyTimestamp")
# the server refuses a simple bind in clear text: a configuration fault, not a denial
_NEEDS_TLS = (ldap.STRONG_AUTH_REQUIRED, ldap.CONFIDENTIALITY_REQUIRED)
#: what a refused bind or account says, as a closed Reason (the rest goes in the detail)
_REASONS = {
    "unknown user": Reason.UNKNOWN_USER,
    "bad password": Reason.BAD_PASSWORD,
    "account disabled": Reason.ACCOUNT_DISABLED,
}
Before = Callable[[str], None]


def _no_hook(identity: str) -> None:
    """The default ``before`` hook: nothing to reserve."""


def _denied(user: str, source: str, what: str, identity: str) -> Verdict:
    reason = _REASONS.get(what, Reason.ACCOUNT_REFUSED)
    detail = "" if what == reason.value else what
    return dataclasses.replace(Verdict.denied(user, source, reason, detail), identity=identity)


def read_bind_password(path: str) -> bytes:
    """The service password: the file's bytes less one trailing newline. Raises
    UnreadableFile (a fault, retried) or ConfigError (an empty file)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise UnreadableFile("authn.ldap.bind_password_file", path, exc.strerror or str(exc)) from None
    if data.endswith(b"\r\n"):
        data = data[:-2]
    elif data.endswith(b"\n"):
        data = data[:-1]
    if not data:
        raise ConfigError(
            "authn.ldap.bind_password_file",
            f"{path} is empty; an empty password would be an anonymous bind",
        )
    return data


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


def _login(user: str) -> str | None:
    """The login as the directory stores it: the client's bytes read as UTF-8, or None."""
    try:
        return user.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        try:
            user.encode("utf-8")
        except UnicodeEncodeError:
            return None
        return user  # already text (not from the network)


class Directory:
    """A credential source and group source backed by LDAP (see the module docstring)."""

    def __init__(self, config: LdapSettings, *, name: str = SOURCE_NAME) -> None:
        if config.url is None:
            raise ConfigError("authn.ldap.url", "missing; the ldap source needs the directory's URL")
        self.name = name
        self.config = config
        self.url: LdapURL = config.url
        self._files_lock = threading.Lock()
        self._unreadable: UnreadableFile | None = None
        self.pool = Pool(ConnectionConfig(config, None))
        self._read_files()
        self._attrlist = list(dict.fromkeys([*config.export_attrs, *_ACCOUNT_ATTRS]))
        local = all(host in ("127.0.0.1", "::1", "localhost") for host, _ in self.url.hosts)
        if self.url.scheme == "ldap" and not config.starttls and not local:
            log.warning(
                "authn: ldap: passwords are sent to %s in clear text; use an ldaps:// URL or "
                "authn.ldap.starttls on (Active Directory refuses such binds anyway)",
                " ".join(self.url.uris),
            )

    def _read_files(self) -> None:
        """Read the files the options name (bind password, CA) and set up the pool; when one
        cannot be read, remember why (every check then answers 500 and tries again)."""
        config = self.config
        try:
            password = None
            if config.bind_password_file is not None:
                password = read_bind_password(config.bind_password_file)
            if config.ca_file is not None:
                probe_file("authn.ldap.ca_file", config.ca_file)
        except UnreadableFile as exc:
            self._unreadable = exc
            return
        old, self.pool = self.pool, Pool(ConnectionConfig(config, password))
        self._unreadable = None
        old.close()

    def _files_ready(self) -> None:
        """Raise SourceUnavailable (500, ``file unreadable``) while a file the options name
        cannot be read; one attribute read on the common path."""
        if self._unreadable is not None:
            with self._files_lock:
                if self._unreadable is not None:
                    try:
                        self._read_files()
                    except ConfigError as exc:  # readable again, but now empty
                        raise SourceUnavailable(
                            self.name, f"ldap: {exc}", status=500, reason=Reason.FILE_UNREADABLE
                        ) from None
            unreadable = self._unreadable
            if unreadable is not None:
                raise self._file_fault(unreadable)

    def _file_fault(self, exc: UnreadableFile) -> SourceUnavailable:
        return SourceUnavailable(self.name, f"ldap: {exc}", status=500, reason=Reason.FILE_UNREADABLE)

    # --- the source protocol ---

    def generation(self) -> object:
        """The directory's content is not watched: a constant (caches use their TTL)."""
        return 0

    def identity(self, user: str, verdict: Verdict | None = None) -> str:
        """The account the lockout counts ``user`` under: the DN of the entry the directory
        found (every spelling of the login that finds it counts as one), else the login
        folded as the directory folds it (:func:`fold_login`)."""
        if verdict is not None:
            if verdict.identity:
                return verdict.identity
            dn = verdict.attrs.get("dn", ())
            if dn:
                return normalize_dn(dn[0])
        login = _login(user)
        return fold_login(login if login is not None else user)

    def check(self, user: str, password: bytes, before: Before = _no_hook) -> Verdict:
        """unknown / denied / granted for ``user``; raises SourceUnavailable (503) on faults.

        ``before(identity)`` is called once, right before the password is sent to the
        directory (or the unknown user's dummy bind), with the account the check counts
        under (:meth:`identity`); it may raise to stop the check (the lockout does).
        """
        if not password:
            return Verdict.denied(user, self.name, Reason.EMPTY_PASSWORD)
        login = _login(user)
        if login is None or not login or "\x00" in login:
            identity = fold_login(login if login is not None else user)
            before(identity)
            return dataclasses.replace(Verdict.unknown(user, self.name), identity=identity)
        self._files_ready()
        slot = self.pool.borrow()
        try:
            if self.config.bind_template is not None:
                return self._check_direct(slot, user, login, password, before)
            return self._check_search(slot, user, login, password, before)
        except UnreadableFile as exc:
            raise self._file_fault(exc) from None
        except DirectoryDown as exc:
            raise self._down(f"while checking the password of {quote(user)}", exc) from None
        finally:
            self.pool.give_back(slot)

    # --- search, then bind ---

    def _check_search(self, slot: Slot, user: str, login: str, password: bytes, before: Before) -> Verdict:
        url = self.url
        filt = user_filter(url.filter, url.login_attr, login)

        def search(conn: Any) -> list[tuple[Any, Any]]:
            return conn.search_ext_s(  # type: ignore[no-any-return]
                url.base_dn,
                _SCOPES[url.scope],
                filt,
                self._attrlist,
                timeout=self.config.timeout,
                sizelimit=2,
            )

        try:
            found = slot.search(search)
        except ldap.SIZELIMIT_EXCEEDED:
            found = [("?", {}), ("?", {})]
        except ldap.NO_SUCH_OBJECT:
            raise self._fault(f"the base DN {url.base_dn!r} does not exist; check authn.ldap.url") from None
        except ldap.LDAPError as exc:
            raise self._fault(f"searching for {quote(user)} failed: {describe(exc)}") from None
        # continuation references (Active Directory) come back with a DN of None: skip them
        entries = [(dn, attrs) for dn, attrs in found if isinstance(dn, str)]
        if len(entries) != 1:
            if entries:
                log.warning(
                    "authn: ldap: user=%s is ambiguous: more than one entry matches %s under %s; "
                    "treated as unknown (make the filter in authn.ldap.url select one entry)",
                    quote(user),
                    filt,
                    url.base_dn,
                )
            identity = fold_login(login)
            before(identity)
            self._user_bind(slot, user, identity, self._dummy_bind)
            return dataclasses.replace(Verdict.unknown(user, self.name), identity=identity)
        dn, attrs = entries[0]
        identity = normalize_dn(dn)
        before(identity)
        denial = self._user_bind(slot, user, identity, lambda conn: conn.simple_bind_s(dn, password))
        if denial is not None:
            return denial
        return self._granted(user, dn, attrs, identity)

    def _dummy_bind(self, conn: Any) -> None:
        """What an unknown user costs: the failed bind a wrong password costs, so the two
        take the same time (no user enumeration by timing). It binds a DN that does not
        exist, with a fixed password: the user's password is not sent for it."""
        conn.simple_bind_s(f"{DUMMY_RDN},{self.url.base_dn}", DUMMY_PASSWORD)

    def _user_bind(self, slot: Slot, user: str, identity: str, op: Callable[[Any], None]) -> Verdict | None:
        """Run ``op`` (a bind as the user) on the bind connection: None when the directory
        accepted it, else a denial. Raises SourceUnavailable when TLS is needed."""
        try:
            slot.user_bind(op)
        except ldap.INVALID_CREDENTIALS as exc:
            return _denied(user, self.name, bind_failure_reason(exc), identity)
        except _NEEDS_TLS as exc:
            raise self._fault(
                f"the server refuses simple binds without TLS ({describe(exc)}); use an "
                "ldaps:// URL or authn.ldap.starttls on"
            ) from None
        except DirectoryDown:
            raise
        except ldap.LDAPError as exc:
            return _denied(user, self.name, f"bind refused: {describe(exc)}", identity)
        return None

    # --- direct bind from a template ---

    def _check_direct(self, slot: Slot, user: str, login: str, password: bytes, before: Before) -> Verdict:
        template = self.config.bind_template
        assert template is not None
        identity = fold_login(login)
        before(identity)
        name = template_bind_name(template, login)
        if name is None:
            return dataclasses.replace(Verdict.unknown(user, self.name), identity=identity)
        url = self.url
        entry: list[tuple[str, Any]] = []

        def bind_and_read(conn: Any) -> None:
            conn.simple_bind_s(name, password)
            try:
                if "=" in template:  # a DN: read the entry itself
                    base, scope, filt = name, ldap.SCOPE_BASE, url.filter
                else:
                    base, scope = url.base_dn, _SCOPES[url.scope]
                    filt = user_filter(url.filter, url.login_attr, login)
                found = conn.search_ext_s(
                    base, scope, filt, self._attrlist, timeout=self.config.timeout, sizelimit=2
                )
                entry.extend((d, a) for d, a in found if isinstance(d, str))
            except (ldap.NO_SUCH_OBJECT, ldap.INSUFFICIENT_ACCESS, ldap.SIZELIMIT_EXCEEDED):
                pass  # the bind proved the password; attributes are a bonus

        denial = self._user_bind(slot, user, identity, bind_and_read)
        if denial is not None:
            return denial
        if len(entry) == 1:
            return self._granted(user, entry[0][0], entry[0][1], identity)
        return self._granted(user, name if "=" in template else "", {}, identity)

    # --- shared ---

    def _granted(self, user: str, dn: str, raw: Mapping[str, list[bytes]], identity: str) -> Verdict:
        problem = account_problem(dict(raw))
        if problem is not None:
            return _denied(user, self.name, problem, identity)
        lower = {k.lower(): v for k, v in raw.items()}
        attrs: dict[str, tuple[str, ...]] = {}
        for name in self.config.export_attrs:
            values = lower.get(name.lower())
            if values:
                attrs[name] = (_text(values[0]),)
        if dn:
            attrs["dn"] = (dn,)
        groups = frozenset(_text(v) for v in lower.get("memberof", ()))
        return Verdict(Outcome.GRANTED, user, self.name, None, groups, attrs, identity=identity)

    def credential_mark(self, dn: str) -> str | None:
        """What changes when the entry's password does, read by the service account: the
        password's own change time where the directory keeps one (OpenLDAP's ppolicy
        ``pwdChangedTime``, Active Directory's ``pwdLastSet``), else the entry's change
        counter (OpenLDAP's ``entryCSN``, AD's ``uSNChanged``: any change of the entry counts),
        else ``modifyTimestamp``. None when the entry is gone or may not log in (disabled,
        locked, expired). Sessions keep it and end when it changes. Raises
        SourceUnavailable (503)."""
        wanted = [*_CREDENTIAL_MARKS, *_ACCOUNT_ATTRS]

        def read(conn: Any) -> list[tuple[Any, Any]]:
            return conn.search_ext_s(  # type: ignore[no-any-return]
                dn, ldap.SCOPE_BASE, "(objectClass=*)", wanted, timeout=self.config.timeout
            )

        slot = self.pool.borrow()
        try:
            found = slot.search(read)
        except ldap.NO_SUCH_OBJECT:
            return None
        except DirectoryDown as exc:
            raise self._down(f"while reading the entry {dn}", exc) from None
        except ldap.LDAPError as exc:
            raise self._fault(f"reading the entry {dn} failed: {describe(exc)}") from None
        finally:
            self.pool.give_back(slot)
        entries = [attrs for d, attrs in found if isinstance(d, str)]
        if len(entries) != 1 or account_problem(dict(entries[0])) is not None:
            return None
        lower = {k.lower(): v for k, v in entries[0].items()}
        for name in _CREDENTIAL_MARKS:
            if lower.get(name.lower()):
                return f"{name}={_text(lower[name.lower()][0])}"
        return ""

    def _fault(self, what: str) -> SourceUnavailable:
        return SourceUnavailable(
            self.name, f"ldap: {what}", status=OUTAGE_STATUS, reason=Reason.DIRECTORY_DOWN
        )

    def _down(self, doing: str, exc: DirectoryDown) -> SourceUnavailable:
        return self._fault(f"no directory server answered {doing}: {exc}")

    # --- groups ---

    def in_any_group(self, verdict: Verdict, names: Iterable[str]) -> bool:
        """True when the user of a granted ldap verdict is in one of the groups ``names``.

        Raises SourceUnavailable (503) when the directory cannot answer.
        """
        wanted_dns = {normalize_dn(n) for n in names if "=" in n}
        wanted_names = {n.lower() for n in names if "=" not in n}
        base = self.config.group_base

        def hit(group_dns: Iterable[str]) -> bool:
            for gdn in group_dns:
                if normalize_dn(gdn) in wanted_dns:
                    return True
                if wanted_names and base is not None and is_under(gdn, base):
                    cn = group_name(gdn)
                    if cn is not None and cn.lower() in wanted_names:
                        return True
            return False

        member_of = set(verdict.groups)
        if hit(member_of):
            return True
        dn_values = verdict.attrs.get("dn", ())
        user_dn = dn_values[0] if dn_values else None
        login = _login(verdict.user)
        self._files_ready()
        slot = self.pool.borrow()
        try:
            if self.config.group_in_chain:
                if user_dn is None:
                    return False
                return hit(self._group_search(slot, in_chain_filter(user_dn)))
            # level 0: the direct groups (memberOf, member/uniqueMember, memberUid)
            direct = set(member_of)
            if user_dn is not None or login is not None:
                first = member_filter([user_dn] if user_dn is not None else [], login)
                direct |= set(self._group_search(slot, first))
            if hit(direct):
                return True
            seen = {normalize_dn(d) for d in direct}
            frontier = direct
            for _level in range(self.config.group_depth):  # groups that hold those groups
                if not frontier:
                    break
                found = self._group_search(slot, member_filter(frontier, None))
                frontier = {d for d in found if normalize_dn(d) not in seen}
                if hit(frontier):
                    return True
                seen |= {normalize_dn(d) for d in frontier}
            return False
        except UnreadableFile as exc:
            raise self._file_fault(exc) from None
        except DirectoryDown as exc:
            raise self._down(f"while looking up the groups of {quote(verdict.user)}", exc) from None
        finally:
            self.pool.give_back(slot)

    def _group_search(self, slot: Slot, filt: str) -> list[str]:
        base = self.config.group_base or self.url.base_dn

        def search(conn: Any) -> list[tuple[Any, Any]]:
            return conn.search_ext_s(  # type: ignore[no-any-return]
                base, ldap.SCOPE_SUBTREE, filt, ["1.1"], timeout=self.config.timeout
            )

        try:
            found = slot.search(search)
        except ldap.NO_SUCH_OBJECT:
            raise self._fault(
                f"the group base {base!r} does not exist; check authn.ldap.group_base"
            ) from None
        except DirectoryDown:
            raise
        except ldap.LDAPError as exc:
            raise self._fault(f"searching groups with {filt} failed: {describe(exc)}") from None
        return [dn for dn, _ in found if isinstance(dn, str)]

    def close(self) -> None:
        self.pool.close()


_directories: dict[LdapSettings, Directory] = {}
_directories_lock = threading.Lock()


def directory_for(settings: Settings) -> Directory:
    """The process's Directory for the ldap part of ``settings`` (built once, shared)."""
    config = settings.ldap
    found = _directories.get(config)
    if found is None:
        with _directories_lock:
            found = _directories.get(config)
            if found is None:
                found = _directories[config] = Directory(config)
    return found
