"""``PythonOption`` keys, their defaults and validation: one frozen Settings per option set.

Every key we read is in :data:`OPTIONS`, with its parser and its one-line doc. A bad value
raises :class:`authn.verdict.ConfigError` whose message names the option, the value and what
would be accepted; an unknown ``authn.*`` key is an error too (a typo must not silently
switch a rule off). Keys that do not start with ``authn.`` belong to others and are ignored.

:func:`settings_for` parses each distinct option set once and caches the result, so the
per-request cost is one dict lookup.
"""

from __future__ import annotations

import difflib
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from authn.verdict import ConfigError
from authn.words import split_words

PREFIX = "authn."
ACTIVATE_AUTHN = "authn.source"  #: the authen handler acts where this option is set
ACTIVATE_AUTHZ = "authn.require.group"  #: the authz handler acts where this option is set
KNOWN_SOURCES = ("file",)


@dataclass(frozen=True, slots=True)
class Settings:
    """The validated configuration of one protected location."""

    sources: tuple[str, ...] = ("file",)
    password_file: str | None = None
    group_file: str | None = None
    require_groups: tuple[str, ...] = ()
    # --- verdict cache (authn/cache.py) ---
    cache_ttl: int = 300
    cache_dir: str = "/var/cache/authn"
    cache_entries: int = 16384


# --- value parsers: each returns the value or raises ValueError("what is accepted") --------


def _sources(value: str) -> tuple[str, ...]:
    names = tuple(split_words(value))
    if not names:
        raise ValueError(f"give one or more of: {', '.join(KNOWN_SOURCES)}")
    for name in names:
        if name not in KNOWN_SOURCES:
            raise ValueError(
                f"{name!r} is not a source; use one or more of: {', '.join(KNOWN_SOURCES)}"
            )
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
        raise ValueError(
            "give one or more group names; quote a name with spaces: \"admins 'web team'\""
        )
    return names


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
    key: str
    field: str
    parse: Callable[[str], Any]
    doc: str


OPTIONS: dict[str, Option] = {
    option.key: option
    for option in (
        Option(
            "authn.source", "sources", _sources, "credential sources tried in order: file (default)"
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
        # --- verdict cache (authn/cache.py) ---
        Option(
            "authn.cache.ttl",
            "cache_ttl",
            _int_in(0, 86400),
            "seconds a granted password stays cached machine-wide (default 300; 0 turns it off)",
        ),
        Option(
            "authn.cache.dir",
            "cache_dir",
            _absolute_path,
            "folder of the machine-wide cache, owned by the Apache user, mode 0700, outside "
            "any web root (default /var/cache/authn)",
        ),
        Option(
            "authn.cache.entries",
            "cache_entries",
            _int_in(64, 4194304),
            "slots of the machine-wide cache file, 512 bytes each (default 16384)",
        ),
    )
}


def parse_settings(options: Iterable[tuple[str, str]]) -> Settings:
    """Validate ``authn.*`` options into Settings; raises ConfigError naming the option."""
    values: dict[str, Any] = {}
    for key, value in options:
        if not key.startswith(PREFIX):
            continue
        option = OPTIONS.get(key)
        if option is None:
            close = difflib.get_close_matches(key, OPTIONS, n=1)
            hint = (
                f"; did you mean {close[0]}?"
                if close
                else f"; known keys: {', '.join(sorted(OPTIONS))}"
            )
            raise ConfigError(key, f"unknown option{hint}")
        try:
            values[option.field] = option.parse(value)
        except ValueError as exc:
            raise ConfigError(key, f"bad value {value!r}: {exc}") from None
    settings = Settings(**values)
    _check_consistency(settings)
    return settings


def _check_consistency(settings: Settings) -> None:
    if "file" in settings.sources and settings.password_file is None:
        raise ConfigError(
            "authn.file",
            "missing; the file source needs the path of an htpasswd-format file "
            "(PythonOption authn.file /etc/apache2/authn/users)",
        )
    if settings.require_groups and settings.group_file is None:
        raise ConfigError(
            "authn.require.group",
            "needs a place to look groups up; set authn.groupfile to an AuthGroupFile-format file",
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


def settings_fields() -> list[str]:
    return [f.name for f in fields(Settings)]
