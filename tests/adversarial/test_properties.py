"""Property tests: whatever arrives from the network or the config, no exception escapes.

A header, an option value or a password file line that makes our parsing raise would be a
500 for every request that carries it; these tests feed them arbitrary input.
"""

from __future__ import annotations

import base64

from hypothesis import given, settings
from hypothesis import strategies as st

from authn.errors import ConfigError
from authn.httpd.basicauth import apr_base64_decode, parse_basic
from authn.httpd.logtext import quote
from authn.settings import OPTIONS, parse_settings
from authn.sources.passwordfile import parse_password_file

latin1 = st.text(alphabet=st.characters(max_codepoint=255))
header_text = st.one_of(
    st.text(),
    latin1,
    latin1.map(lambda s: "Basic " + s),
    st.binary().map(lambda b: "Basic " + base64.b64encode(b).decode()),
    st.binary().map(lambda b: "bAsIc \t " + base64.b64encode(b).decode().rstrip("=") + "!x"),
)


@given(header_text)
@settings(max_examples=600)
def test_any_authorization_header_parses_without_raising(header: str) -> None:
    parsed = parse_basic(header)
    if parsed is not None:
        user, password = parsed
        assert ":" not in user and "\x00" not in user and "\x00" not in password


@given(
    latin1.filter(lambda u: ":" not in u and "\x00" not in u),
    latin1.filter(lambda p: "\x00" not in p),
)
def test_a_well_formed_header_gives_back_its_user_and_password(user: str, password: str) -> None:
    raw = (user + ":" + password).encode("latin-1")
    assert parse_basic("Basic " + base64.b64encode(raw).decode()) == (user, password)
    # Apache ignores padding and whatever follows the base64 text.
    unpadded = base64.b64encode(raw).decode().rstrip("=")
    assert parse_basic(f"basic   {unpadded}=garbage") == (user, password)


@given(st.binary())
def test_apr_base64_decode_is_total(data: bytes) -> None:
    apr_base64_decode(data)


option_keys = st.one_of(
    st.sampled_from(sorted(OPTIONS)),
    st.text(max_size=30).map("authn.".__add__),
    st.text(max_size=30),
)


@given(st.lists(st.tuples(option_keys, st.text(max_size=60)), max_size=8))
@settings(max_examples=600)
def test_options_give_settings_or_a_config_error_naming_the_option(
    options: list[tuple[str, str]],
) -> None:
    try:
        parse_settings(options)
    except ConfigError as exc:
        assert exc.option.startswith("authn.")
        assert str(exc).startswith(exc.option)


lines = st.one_of(
    st.binary(max_size=200),
    st.builds(
        lambda u, h: u + b":" + h,
        st.binary(max_size=20),
        st.sampled_from([b"$2y$05$" + b"a" * 53, b"$apr1$salt$hash", b"{SHA}x", b"!", b"", b"plain"]),
    ),
)


@given(st.lists(lines, max_size=30), st.sampled_from([b"\n", b"\r\n", b"\r"]))
@settings(max_examples=400)
def test_any_password_file_parses_without_raising(parts: list[bytes], newline: bytes) -> None:
    table = parse_password_file(newline.join(parts), "/etc/users")
    for user, stored in table.hashes.items():
        assert ":" not in user and ":" not in stored


@given(st.text())
def test_logged_text_is_one_line_with_no_bare_quote(text: str) -> None:
    out = quote(text)
    inner = out[1:-1]
    assert "\n" not in out and "\r" not in out
    assert '"' not in inner.replace('\\"', "")
