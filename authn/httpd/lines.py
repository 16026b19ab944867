"""The lines of a password or group file as Apache reads them (``ap_cfg_getline``).

mod_authn_file and mod_authz_groupfile read their files with Apache's config-line reader, in
a buffer of 8192 bytes (``MAX_STRING_LEN``). Its rules decide which users exist, so the
sources follow them exactly (whatever native Apache grants for a file, authn grants, and
nothing more):

* **Continuation**: a physical line ending in a backslash (before its LF or CRLF) is joined
  with the next one; the backslash and the line end are dropped. ``# note \\`` followed by
  ``bob:$apr1$...`` is one comment, so bob does not exist; ``bob\\`` followed by
  ``:$apr1$...`` is bob's line.
* **Length**: a logical line must fit the buffer with its line end: more than
  :data:`APACHE_MAX_LINE` bytes (counting a CR before the LF) and Apache stops reading the
  file there, so every later line is ignored too.
* Leading and trailing white space of the logical line is dropped.

Text is Latin-1-decoded bytes (one code point per byte), as the sources use it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

APACHE_MAX_LINE = 8190  #: MAX_STRING_LEN (8192) minus the LF and the terminating NUL
_SPACE = " \t\r\n\v\f"


@dataclass(frozen=True, slots=True)
class TooLong:
    """Apache stops reading here: the logical line starting at ``number`` is too long."""

    number: int


def logical_lines(text: str) -> Iterator[tuple[int, str] | TooLong]:
    """``(number of its first physical line, trimmed logical line)`` for each line, as
    ``ap_cfg_getline`` returns them; a :class:`TooLong` last, where Apache would stop."""
    physical = text.split("\n")
    if physical[-1] == "":
        physical.pop()  # the text ended with a line end (or was empty)
    joined = ""
    start = 0
    for index, raw in enumerate(physical):
        number = index + 1
        if not joined:
            start = number
        if len(joined) + len(raw) > APACHE_MAX_LINE:
            yield TooLong(start)
            return
        has_end = index < len(physical) - 1 or text.endswith("\n")
        line = raw[:-1] if has_end and raw.endswith("\r") else raw
        if has_end and line.endswith("\\"):
            joined += line[:-1]
            continue
        yield start, (joined + line).strip(_SPACE)
        joined = ""
    if joined:
        yield start, joined.strip(_SPACE)
