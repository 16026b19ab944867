"""Groups from an AuthGroupFile-format file (``group: user1 user2``), parsed once per change.

Parsing follows Apache's mod_authz_groupfile: lines are read by Apache's line reader
(:mod:`authn.httpd.lines`: a trailing backslash continues a line, a line over 8190
bytes ends the file), each line is trimmed; empty lines and lines
starting with ``#`` are skipped; the group name is everything before the first ``:`` (so a
group name may contain spaces: ``web team: alice``); the members are the words after it,
split like Apache's ``ap_getword_conf`` (a quoted member may contain spaces). A group may
span several lines; a user's groups are the union of all lines naming the user.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import MappingProxyType

from authn.httpd.lines import APACHE_MAX_LINE, TooLong, logical_lines
from authn.httpd.words import split_words
from authn.watchedfile import CHECK_INTERVAL, WatchedFile

log = logging.getLogger("authn")

GroupTable = Mapping[str, frozenset[str]]  # user -> the groups that name the user


def parse_group_file(data: bytes, path: str = "<group file>") -> GroupTable:
    """Parse an AuthGroupFile-format file; never raises for bad content."""
    groups_of: dict[str, set[str]] = {}
    for item in logical_lines(data.decode("latin-1")):
        if isinstance(item, TooLong):
            log.warning(
                "authn: %s:%d: line longer than %d bytes; Apache stops reading the file here",
                path,
                item.number,
                APACHE_MAX_LINE,
            )
            break
        number, line = item
        if not line or line.startswith("#"):
            continue
        group, colon, members = line.partition(":")
        if not colon:
            log.warning("authn: %s:%d: no ':' after the group name; line ignored", path, number)
            continue
        for member in split_words(members):
            groups_of.setdefault(member, set()).add(group)
    return MappingProxyType({user: frozenset(names) for user, names in groups_of.items()})


class GroupFile:
    """The groups of each user, from an AuthGroupFile-format file kept warm in memory."""

    def __init__(self, path: str, *, interval: float = CHECK_INTERVAL) -> None:
        self.path = path
        self._file = WatchedFile(
            path, parse_group_file, what="group file", source="groupfile", interval=interval
        )

    def groups_of(self, user: str) -> frozenset[str]:
        """The groups naming ``user``; raises SourceUnavailable when the file cannot be read."""
        return self._file.current().value.get(user, frozenset())
