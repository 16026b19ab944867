"""Making untrusted text safe for one-line, greppable log messages."""

from __future__ import annotations

MAX_LOGGED = 128


def quote(text: str, limit: int = MAX_LOGGED) -> str:
    """``text`` in double quotes with control characters, quotes and backslashes escaped,
    cut to ``limit`` characters: a user name can never forge a log line.

    Names from the network arrive Latin-1-decoded (one code point per byte); they are shown
    as the UTF-8 text a browser meant, with bytes that are not UTF-8 as ``\\xNN``. A literal
    backslash is doubled, so the byte 0xff (``\\xff``) and the four characters ``\\xff``
    (``\\\\xff``) stay apart.
    """
    try:
        text = text.encode("latin-1").decode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        pass
    cut = len(text) > limit
    out = []
    for ch in text[:limit]:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch.isprintable() and ch != "\x7f":
            out.append(ch)
        else:
            out.append(f"\\x{code:02x}" if code < 256 else f"\\u{code:04x}")
    return '"' + "".join(out) + ('..."' if cut else '"')
