"""Making untrusted text safe for one-line, greppable log messages."""

from __future__ import annotations

MAX_LOGGED = 128


def quote(text: str, limit: int = MAX_LOGGED) -> str:
    """``text`` in double quotes with control characters, quotes and backslashes escaped,
    cut to ``limit`` characters: a user name can never forge a log line.

    Names from the network arrive Latin-1-decoded (one code point per byte); they are shown
    as the UTF-8 text a browser meant, with bytes that are not UTF-8 as ``\\xNN``.
    """
    try:
        text = text.encode("latin-1").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        pass
    cut = len(text) > limit
    out = []
    for ch in text[:limit]:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch.isprintable() and ch != "\x7f":
            out.append(ch)
        else:
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 256 else f"\\u{ord(ch):04x}")
    return '"' + "".join(out) + ('..."' if cut else '"')
