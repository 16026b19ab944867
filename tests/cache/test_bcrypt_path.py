"""bcrypt is checked with libxcrypt (Apache's crypt_blowfish) for speed: same answers as the
bcrypt package and as Apache, including the 72-byte limit and the $2a$/$2b$/$2y$ prefixes."""

from __future__ import annotations

import bcrypt
import pytest

from authn import hashes


@pytest.mark.parametrize("prefix", ["$2y$", "$2a$", "$2b$"])
@pytest.mark.parametrize("password", [b"x", b"a" * 72, b"a" * 80, "pässwörd".encode()])
def test_same_answers_as_the_bcrypt_package(prefix: str, password: bytes) -> None:
    stored = bcrypt.hashpw(password[:72], bcrypt.gensalt(4)).decode().replace("$2b$", prefix)
    assert hashes.verify(password, stored)
    wrong = b"b" + password[1:]
    assert not hashes.verify(wrong, stored)
    assert bcrypt.checkpw(password[:72], stored.encode()) == hashes.verify(password, stored)


def test_malformed_bcrypt_never_matches() -> None:
    assert not hashes.verify(b"pw", "$2y$05$short")
    assert not hashes.verify(b"pw", "$2y$99$" + "." * 53)
