"""Splitting option values and group-file lines into words, the way Apache does.

Apache splits ``Require group a "web team"`` and AuthGroupFile member lists with
``ap_getword_conf``: words are separated by white space, and a word may be quoted with ``"``
or ``'`` to hold spaces. Inside a word, a backslash escapes only a backslash or the quote
character, so LDAP DNs such as ``cn=Smith\\, John`` pass through unchanged.
"""

from __future__ import annotations

_SPACE = " \t\n\r\v\f"


def split_words(line: str) -> list[str]:
    """Split ``line`` into words like Apache's ``ap_getword_conf``; never raises.

    An unterminated quote runs to the end of the line, as in Apache.
    """
    words: list[str] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i] in _SPACE:
            i += 1
        if i >= n:
            return words
        quote = line[i] if line[i] in "\"'" else ""
        if quote:
            i += 1
        out: list[str] = []
        while i < n:
            ch = line[i]
            if quote and ch == quote:
                i += 1
                break
            if not quote and ch in _SPACE:
                break
            if ch == "\\" and i + 1 < n and (line[i + 1] == "\\" or (quote and line[i + 1] == quote)):
                i += 1
                ch = line[i]
            out.append(ch)
            i += 1
        words.append("".join(out))
