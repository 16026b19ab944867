"""``PythonOption`` keys, their defaults and validation: one frozen Settings per option set.

Every key we read is in :data:`OPTIONS`, with its parser and its one-line doc. A bad value
raises :class:`authn.errors.ConfigError` whose message names the option, the value and what
would be accepted; an unknown ``authn.*`` key is an error too (a typo must not silently
switch a rule off). Keys that do not start with ``authn.`` belong to others and are ignored.

:func:`settings_for` parses each distinct option set once and caches the result, so the
per-request cost is one dict lookup.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from authn.errors import ConfigError
from authn.httpd.words import split_words
from authn.sources.ldap.url import LdapURL, parse_ldap_url

PREFIX = "authn."
DEFAULT_THRESHOLD = 10  #: authn.lockout.threshold
DEFAULT_CLIENT_THRESHOLD = 100  #: authn.lockout.client_threshold
DEFAULT_WINDOW = 600  #: authn.lockout.window
LOCKOUT_STORES = ("sqlite", "redis")
ACTIVATE_AUTHN = "authn.source"  #: the authen handler acts where this option is set
ACTIVATE_AUTHZ = "authn.require.group"  #: the authz handler acts where this option is set
KNOWN_SOURCES = ("file", "ldap")


@dataclass(frozen=True, slots=True)
class LdapSettings:
    """``authn.ldap.*``: the directory source (:mod:`authn.sources.ldap.directory`). Its identity
    in a process: locations with equal LdapSettings share one Directory and its connections."""

    url: LdapURL | None = None
    bind_dn: str | None = None
    bind_password_file: str | None = None
    starttls: bool = False
    ca_file: str | None = None
    group_base: str | None = None
    bind_template: str | None = None
    group_depth: int = 5
    group_in_chain: bool = False
    attributes: tuple[str, ...] = ()
    remote_user_attribute: str | None = None
    timeout: float = 5.0

    @property
    def export_attrs(self) -> tuple[str, ...]:
        """Attributes a granted verdict carries: the URL's, ``authn.ldap.attributes`` and
        the REMOTE_USER attribute, each once, in that order."""
        exported = [*(self.url.attrs if self.url is not None else ()), *self.attributes]
        if self.remote_user_attribute:
            exported.append(self.remote_user_attribute)
        return tuple(dict.fromkeys(exported))


@dataclass(frozen=True, slots=True)
class LockoutSettings:
    """``authn.lockout.*``: counting failures and refusing guessers (:mod:`authn.lockout.policy`)."""

    enabled: bool = True
    threshold: int = DEFAULT_THRESHOLD
    client_threshold: int = DEFAULT_CLIENT_THRESHOLD
    window: int = DEFAULT_WINDOW
    store: str = "sqlite"
    dir: str | None = None
    redis: str | None = None


@dataclass(frozen=True, slots=True)
class CacheSettings:
    """``authn.cache.*``: the verified-credential cache (:mod:`authn.cache.verdicts`)."""

    ttl: int = 300
    dir: str = "/var/cache/authn"
    entries: int = 16384


@dataclass(frozen=True, slots=True)
class LoginSettings:
    """``authn.login*``, ``authn.session.*``, ``authn.otp.*``: how people sign in
    (:mod:`authn.signin`): Basic, a sign-in form with a session cookie, or both; the
    session's timeouts; the second factor."""

    form: bool = False  #: a browser without a session is sent to the sign-in page
    basic: bool = True  #: Basic credentials are accepted
    url: str = "/authn"  #: where the sign-in pages are (``/authn/login``, ``/authn/logout``)
    template: str | None = None  #: an HTML template replacing the shipped sign-in page
    idle: int = 1800  #: seconds without a request after which a session ends
    lifetime: int = 43200  #: seconds after sign-in after which a session ends
    otp_file: str | None = None  #: TOTP secrets of enrolled users (``authn otp enroll``)
    otp_optional: bool = False  #: users not enrolled may sign in with a password alone


@dataclass(frozen=True, slots=True)
class Settings:
    """The validated configuration of one protected location, in typed parts."""

    sources: tuple[str, ...] = ("file",)
    password_file: str | None = None
    group_file: str | None = None
    require_groups: tuple[str, ...] = ()
    ldap: LdapSettings = LdapSettings()
    lockout: LockoutSettings = LockoutSettings()
    cache: CacheSettings = CacheSettings()
    login: LoginSettings = LoginSettings()


# --- value parsers: each returns the value or raises ValueError("what is accepted") --------


def parse_switch(value: str) -> bool:
    word = value.strip().lower()
    if word in ("on", "yes", "true", "1"):
        return True
    if word in ("off", "no", "false", "0"):
        return False
    raise ValueError("use on or off")


def _count(value: str) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        raise ValueError("give a whole number of failures, 1 or more, such as 10") from None
    if not 1 <= number <= 1_000_000:
        raise ValueError("give a whole number of failures from 1 to 1000000")
    return number


def _seconds(value: str) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        raise ValueError("give a whole number of seconds, such as 600") from None
    if not 1 <= number <= 7 * 86400:
        raise ValueError("give a number of seconds from 1 to 604800 (a week)")
    return number


def _store(value: str) -> str:
    word = value.strip().lower()
    if word not in LOCKOUT_STORES:
        raise ValueError(f"use one of: {', '.join(LOCKOUT_STORES)}")
    return word


def _redis_url(value: str) -> str:
    if not value.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("give a URL such as redis://127.0.0.1:6379/0 (rediss:// for TLS)")
    return value


def _login_modes(value: str) -> tuple[bool, bool]:
    words = set(split_words(value.lower()))
    if not words or not words <= {"basic", "form"}:
        raise ValueError('use basic, form, or "form basic" (browsers get the form, scripts may send Basic)')
    return "form" in words, "basic" in words


def _url_path(value: str) -> str:
    text = value.strip().rstrip("/")
    if not text.startswith("/") or any(c in text for c in "?#\\ \"'<>") or "//" in text:
        raise ValueError("give a local path such as /authn (no query, no spaces)")
    return text


def _sources(value: str) -> tuple[str, ...]:
    names = tuple(split_words(value))
    if not names:
        raise ValueError(f"give one or more of: {', '.join(KNOWN_SOURCES)}")
    for name in names:
        if name not in KNOWN_SOURCES:
            raise ValueError(f"{name!r} is not a source; use one or more of: {', '.join(KNOWN_SOURCES)}")
    if len(set(names)) != len(names):
        raise ValueError("a source is named twice")
    return names


def _absolute_path(value: str) -> str:
    if not value or not os.path.isabs(value):
        raise ValueError("give an absolute path, such as /etc/apache2/authn/users")
    return value


def _group_names(value: str) -> tuple[str, ...]:
    names = tuple(name for name in split_words(value) if name)
    if not names:
        raise ValueError("give one or more group names; quote a name with spaces: \"admins 'web team'\"")
    return names


# --- ldap value parsers ---


def _dn(value: str) -> str:
    text = value.strip()
    if "=" not in text:
        raise ValueError("give a DN, such as cn=apache,ou=services,dc=example,dc=org")
    return text


def _bind_template(value: str) -> str:
    text = value.strip()
    if text.count("%s") != 1:
        raise ValueError(
            "put exactly one %s where the login goes: uid=%s,ou=people,dc=example,dc=org "
            "or %s@example.org (Active Directory)"
        )
    return text


def _attribute_names(value: str) -> tuple[str, ...]:
    names = tuple(n for n in re.split(r"[\s,]+", value.strip()) if n)
    for name in names:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]*", name):
            raise ValueError(f"{name!r} is not an attribute name; give names such as mail cn")
    if not names:
        raise ValueError("give one or more attribute names, such as mail cn")
    return names


def _attribute_name(value: str) -> str:
    names = _attribute_names(value)
    if len(names) != 1:
        raise ValueError("give one attribute name, such as mail")
    return names[0]


def _timeout(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError("give a number of seconds from 0.5 to 60") from None
    if not 0.5 <= seconds <= 60:
        raise ValueError("give a number of seconds from 0.5 to 60")
    return seconds


def _int_in(low: int, high: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(value, 10)
        except ValueError:
            number = low - 1
        if not low <= number <= high:
            raise ValueError(f"give a whole number from {low} to {high}")
        return number

    return parse


@dataclass(frozen=True, slots=True)
class Option:
    """One ``PythonOption`` key: where its value goes (``field``, ``part.field`` for a typed
    part), how it is parsed (raises ValueError saying what is accepted), and its doc line."""

    key: str
    field: str
    parse: Callable[[str], Any]
    doc: str


OPTIONS: dict[str, Option] = {
    option.key: option
    for option in (
        Option(
            "authn.source",
            "sources",
            _sources,
            'credential sources tried in order: file, ldap or "file ldap"; authn acts only where '
            "this is set (conf/authn-basic.conf sets file)",
        ),
        Option(
            "authn.file",
            "password_file",
            _absolute_path,
            "htpasswd-format password file (absolute path)",
        ),
        Option(
            "authn.groupfile",
            "group_file",
            _absolute_path,
            "AuthGroupFile-format group file (absolute path)",
        ),
        Option(
            "authn.require.group",
            "require_groups",
            _group_names,
            "the user must be in one of these groups; words as in Apache's Require line",
        ),
        # --- ldap options ---
        Option(
            "authn.ldap.url",
            "ldap.url",
            parse_ldap_url,
            "AuthLDAPURL syntax: ldap[s]://host1 host2:port/basedn?attr,attr?scope?filter",
        ),
        Option("authn.ldap.bind_dn", "ldap.bind_dn", _dn, "service DN for searches"),
        Option(
            "authn.ldap.bind_password_file",
            "ldap.bind_password_file",
            _absolute_path,
            "file holding the service password (one trailing newline ignored)",
        ),
        Option("authn.ldap.starttls", "ldap.starttls", parse_switch, "StartTLS on ldap:// (on|off)"),
        Option(
            "authn.ldap.ca_file",
            "ldap.ca_file",
            _absolute_path,
            "PEM file of the CA that signs the directory's certificate",
        ),
        Option("authn.ldap.group_base", "ldap.group_base", _dn, "where group names are looked up"),
        Option(
            "authn.ldap.bind_template",
            "ldap.bind_template",
            _bind_template,
            "direct bind without search: uid=%s,ou=people,dc=example,dc=org or %s@example.org",
        ),
        Option("authn.ldap.group_depth", "ldap.group_depth", _int_in(0, 20), "nested group levels (5)"),
        Option(
            "authn.ldap.group_in_chain",
            "ldap.group_in_chain",
            parse_switch,
            "Active Directory: nested groups by the in-chain rule 1.2.840.113556.1.4.1941",
        ),
        Option(
            "authn.ldap.attributes",
            "ldap.attributes",
            _attribute_names,
            "more attributes exported as AUTHENTICATE_<ATTR>",
        ),
        Option(
            "authn.ldap.remote_user_attribute",
            "ldap.remote_user_attribute",
            _attribute_name,
            "REMOTE_USER is this attribute of the user's entry instead of the login",
        ),
        Option("authn.ldap.timeout", "ldap.timeout", _timeout, "network and operation timeout"),
        # --- lockout ---
        Option(
            "authn.lockout",
            "lockout.enabled",
            parse_switch,
            "on (default) or off: refuse guessing clients with 429 before any password check",
        ),
        Option(
            "authn.lockout.threshold",
            "lockout.threshold",
            _count,
            "failures of one user from one address that lock that pair out (default 10)",
        ),
        Option(
            "authn.lockout.client_threshold",
            "lockout.client_threshold",
            _count,
            "failures from one address, any users, that lock the address out (default 100)",
        ),
        Option(
            "authn.lockout.window",
            "lockout.window",
            _seconds,
            "seconds from the first failure until a counter resets (default 600)",
        ),
        Option(
            "authn.lockout.store",
            "lockout.store",
            _store,
            "where counters live: sqlite (default, this machine) or redis (several machines)",
        ),
        Option(
            "authn.lockout.dir",
            "lockout.dir",
            _absolute_path,
            "folder for the sqlite counters, writable by the Apache user only",
        ),
        Option(
            "authn.lockout.redis",
            "lockout.redis",
            _redis_url,
            "Redis URL for authn.lockout.store redis, such as redis://10.0.0.5:6379/0",
        ),
        # --- verdict cache ---
        Option(
            "authn.cache.ttl",
            "cache.ttl",
            _int_in(0, 86400),
            "seconds a granted password stays cached machine-wide (default 300; 0 turns it off)",
        ),
        Option(
            "authn.cache.dir",
            "cache.dir",
            _absolute_path,
            "folder of the machine-wide cache, owned by the Apache user, mode 0700, outside "
            "any web root (default /var/cache/authn)",
        ),
        Option(
            "authn.cache.entries",
            "cache.entries",
            _int_in(64, 4194304),
            "slots of the machine-wide cache file, 512 bytes each (default 16384)",
        ),
        # --- sign-in ---
        Option(
            "authn.login",
            "login.mode",
            _login_modes,
            'basic (default), form (a sign-in page and a session cookie) or "form basic" '
            "(browsers get the form, scripts may still send Basic)",
        ),
        Option(
            "authn.login.url",
            "login.url",
            _url_path,
            "where the sign-in pages are: <url>/login and <url>/logout (conf/authn-login.conf)",
        ),
        Option(
            "authn.login.template",
            "login.template",
            _absolute_path,
            "an HTML file replacing the shipped sign-in page ($realm, $message, $form_fields...)",
        ),
        Option(
            "authn.session.idle",
            "login.idle",
            _seconds,
            "seconds without a request after which a session ends (default 1800)",
        ),
        Option(
            "authn.session.lifetime",
            "login.lifetime",
            _seconds,
            "seconds after sign-in after which a session ends, however active (default 43200)",
        ),
        Option(
            "authn.otp.file",
            "login.otp_file",
            _absolute_path,
            "TOTP secrets (authn otp enroll): an enrolled user must give a code after the password",
        ),
        Option(
            "authn.otp.optional",
            "login.otp_optional",
            parse_switch,
            "on: users not enrolled in authn.otp.file may sign in with the password alone (default off)",
        ),
    )
}


def parse_settings(options: Iterable[tuple[str, str]]) -> Settings:
    """Validate ``authn.*`` options into Settings; raises ConfigError naming the option."""
    values: dict[str, Any] = {}
    parts: dict[str, dict[str, Any]] = {"ldap": {}, "lockout": {}, "cache": {}, "login": {}}
    for key, value in options:
        if not key.startswith(PREFIX):
            continue
        option = OPTIONS.get(key)
        if option is None:
            import difflib  # only for a bad config: not loaded into every Apache child

            close = difflib.get_close_matches(key, OPTIONS, n=1)
            hint = f"; did you mean {close[0]}?" if close else f"; known keys: {', '.join(sorted(OPTIONS))}"
            raise ConfigError(key, f"unknown option{hint}")
        try:
            parsed = option.parse(value)
        except ValueError as exc:
            raise ConfigError(key, f"bad value {value!r}: {exc}") from None
        part, _, name = option.field.rpartition(".")
        if option.field == "login.mode":
            parts["login"]["form"], parts["login"]["basic"] = parsed
            continue
        (parts[part] if part else values)[name] = parsed
    settings = Settings(
        **values,
        ldap=LdapSettings(**parts["ldap"]),
        lockout=LockoutSettings(**parts["lockout"]),
        cache=CacheSettings(**parts["cache"]),
        login=LoginSettings(**parts["login"]),
    )
    _check_consistency(settings)
    return settings


def store_settings(options: Mapping[str, str]) -> Settings:
    """Settings holding only the ``authn.lockout.*`` part of ``options`` (where the lockout
    counters and the sessions live), for a location that checks no password itself: the
    sign-in pages. Raises ConfigError for a bad value, like :func:`parse_settings`."""
    part: dict[str, Any] = {}
    for key, value in options.items():
        option = OPTIONS.get(key)
        if option is not None and option.field.startswith("lockout."):
            try:
                part[option.field.partition(".")[2]] = option.parse(value)
            except ValueError as exc:
                raise ConfigError(key, f"bad value {value!r}: {exc}") from None
    return Settings(lockout=LockoutSettings(**part))


def _check_consistency(settings: Settings) -> None:
    if "file" in settings.sources and settings.password_file is None:
        raise ConfigError(
            "authn.file",
            "missing; the file source needs the path of an htpasswd-format file "
            "(PythonOption authn.file /etc/apache2/authn/users)",
        )
    _check_ldap(settings)
    if settings.require_groups and settings.group_file is None and "ldap" not in settings.sources:
        raise ConfigError(
            "authn.require.group",
            "needs a place to look groups up; set authn.groupfile to an AuthGroupFile-format file",
        )
    if settings.login.otp_file is not None and settings.login.basic:
        raise ConfigError(
            "authn.otp.file",
            "a second factor needs the sign-in form alone: Basic credentials cannot carry a code, "
            'so with authn.login basic or "form basic" they would skip it; set '
            "PythonOption authn.login form (conf/authn-form.conf)",
        )
    lockout = settings.lockout
    if lockout.enabled and lockout.store == "redis" and lockout.redis is None:
        raise ConfigError(
            "authn.lockout.redis",
            "missing; authn.lockout.store redis needs the server's URL "
            "(PythonOption authn.lockout.redis redis://127.0.0.1:6379/0)",
        )


def _check_ldap(settings: Settings) -> None:
    """Consistency of the authn.ldap.* options (only when the ldap source is named)."""
    if "ldap" not in settings.sources:
        return
    ldap = settings.ldap
    url = ldap.url
    if url is None:
        raise ConfigError(
            "authn.ldap.url",
            "missing; the ldap source needs the directory's URL "
            '(PythonOption authn.ldap.url "ldaps://ldap.example.org/ou=people,dc=example,dc=org?uid")',
        )
    if (ldap.bind_dn is None) != (ldap.bind_password_file is None):
        missing = "bind_dn" if ldap.bind_dn is None else "bind_password_file"
        raise ConfigError(
            f"authn.ldap.{missing}",
            "authn.ldap.bind_dn and authn.ldap.bind_password_file go together; "
            "set both for a service account, or neither for anonymous searches",
        )
    if ldap.starttls and url.scheme == "ldaps":
        raise ConfigError(
            "authn.ldap.starttls",
            "StartTLS is for ldap:// URLs; an ldaps:// URL is already encrypted, drop this option",
        )
    if ldap.ca_file is not None and url.scheme == "ldap" and not ldap.starttls:
        raise ConfigError(
            "authn.ldap.ca_file",
            "set, but the connection is not encrypted; use an ldaps:// URL or authn.ldap.starttls on",
        )
    names = [g for g in settings.require_groups if "=" not in g]
    if names and settings.group_file is None and ldap.group_base is None:
        raise ConfigError(
            "authn.require.group",
            f"{names[0]!r} is a group name, not a DN; set authn.ldap.group_base to where the "
            "directory's groups are (ou=groups,dc=example,dc=org), or name groups by DN",
        )


_cache: dict[frozenset[tuple[str, str]], Settings] = {}
_cache_lock = threading.Lock()


def settings_for(options: Mapping[str, str]) -> Settings:
    """Settings for an option set, parsed on first use and then served from a cache.

    Raises ConfigError (not cached, so a fixed config takes effect after a graceful restart
    and every request with the bad config is logged).
    """
    key = frozenset((k, v) for k, v in options.items() if k.startswith(PREFIX))
    settings = _cache.get(key)
    if settings is None:
        settings = parse_settings(key)
        with _cache_lock:
            _cache[key] = settings
    return settings


def _default_text(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return " ".join(str(v) for v in value) or "none"
    return str(value)


def default_of(option: Option) -> str:
    """The default value of ``option`` as an admin would write it."""
    if option.field == "login.mode":
        return "basic"
    part, _, name = option.field.rpartition(".")
    holder: object = getattr(Settings(), part) if part else Settings()
    return _default_text(getattr(holder, name))


_SECTIONS = (
    ("", "Sources and rules"),
    ("ldap", "LDAP and Active Directory (`authn.ldap.*`)"),
    ("lockout", "Lockout (`authn.lockout.*`)"),
    ("cache", "Verified-credential cache (`authn.cache.*`)"),
    ("login", "Sign-in from a browser (`authn.login*`, `authn.session.*`, `authn.otp.*`)"),
)


def reference() -> str:
    """The option reference in Markdown, generated from :data:`OPTIONS` (docs/options.md is
    this text; a test keeps it current)."""
    lines = [
        "# Options (`PythonOption`)",
        "",
        "Generated from the table in `authn/settings.py` (`python -m authn.settings > docs/options.md`);",
        "a test fails when this file and the code disagree. A bad value or an unknown `authn.*` key",
        "answers 500 with one error-log line naming the option and the fix; `authn check` finds the",
        "same errors before Apache does.",
    ]
    for part, title in _SECTIONS:
        lines += ["", f"## {title}", "", "| option | default | meaning |", "|---|---|---|"]
        for option in OPTIONS.values():
            if option.field.rpartition(".")[0] == part:
                doc = option.doc.replace("|", "\\|")
                lines.append(f"| `{option.key}` | `{default_of(option)}` | {doc} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(reference(), end="")
