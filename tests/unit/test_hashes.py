"""authn.hashes follows Apache's apr_password_validate (cross-checked with htpasswd in
tests/apache/test_native_parity.py)."""

import pytest

from authn import hashes

SCHEMES = ["bcrypt", "apr1", "sha256-crypt", "sha512-crypt", "sha1", "crypt"]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_roundtrip(scheme: str) -> None:
    stored = hashes.make_hash(b"s3cret", scheme, 4 if scheme == "bcrypt" else None)
    assert hashes.identify(stored).scheme == scheme
    assert hashes.verify(b"s3cret", stored)
    assert not hashes.verify(b"s3cret!", stored)
    assert not hashes.verify(b"", stored)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_dummy_has_same_scheme_and_matches_nothing(scheme: str) -> None:
    stored = hashes.make_hash(b"s3cret", scheme, 4 if scheme == "bcrypt" else None)
    dummy = hashes.dummy_like(stored)
    assert hashes.identify(dummy) == hashes.identify(stored)
    assert dummy != stored
    assert not hashes.verify(b"s3cret", dummy)


@pytest.mark.parametrize("prefix", ["$2y$", "$2a$", "$2b$"])
def test_bcrypt_prefixes(prefix: str) -> None:
    stored = prefix + hashes.make_hash(b"pw", "bcrypt", 4)[4:]
    assert hashes.verify(b"pw", stored)


def test_bcrypt_uses_first_72_bytes_like_apache() -> None:
    long = b"x" * 72
    stored = hashes.make_hash(long + b"tail", "bcrypt", 4)
    assert hashes.verify(long, stored)
    assert hashes.verify(long + b"other tail", stored)
    assert not hashes.verify(b"x" * 71, stored)


def test_non_ascii_bytes_are_hashed_as_sent() -> None:
    utf8 = "pässwörd".encode()
    for scheme in SCHEMES[:-1]:
        stored = hashes.make_hash(utf8, scheme, 4 if scheme == "bcrypt" else None)
        assert hashes.verify(utf8, stored)
        assert not hashes.verify("pässwörd".encode("latin-1"), stored)


@pytest.mark.parametrize("stored", ["secret", "", "!$2y$05$abc", "*", "$unknown$x"])
def test_plaintext_and_junk_never_match(stored: str) -> None:
    assert not hashes.verify(b"secret", stored)
    assert not hashes.verify(stored.encode() or b"x", stored)


def test_nul_in_password_never_matches() -> None:
    stored = hashes.make_hash(b"a", "sha512-crypt")
    assert not hashes.verify(b"a\0b", stored)


def test_costs_are_identified() -> None:
    assert hashes.identify(hashes.make_hash(b"x", "bcrypt", 6)).cost == 6
    assert hashes.identify(hashes.make_hash(b"x", "sha512-crypt", 6000)).cost == 6000
    assert hashes.identify("$6$salt$abc").cost == 5000


def test_make_hash_refuses_bad_cost() -> None:
    with pytest.raises(ValueError, match="cost"):
        hashes.make_hash(b"x", "bcrypt", 3)
    with pytest.raises(ValueError, match="scheme"):
        hashes.make_hash(b"x", "rot13")


EXOTIC = [
    "$y$j9T$abcdefghijklmnop$wRwvHNqzMkHLG74uVpAxQd0FNz1VhSvhpdNQ2iGwdA6",  # yescrypt
    "$7$CU..../....abcdefghijklmnop$k4rB",  # scrypt
    "$2y$05$short",  # malformed bcrypt
    "$3$$8846f7eaee8fb117ad06bdd830b7586c",  # NT hash
    "secret",  # plaintext, read by crypt(3) as a DES salt
    "Pa$$w0rd",  # the same
    "_J9..abcdwxyz",  # plaintext read as BSDi crypt settings
    "pass word",  # plaintext crypt(3) refuses at once
    "",
]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_dummies_cost_what_the_hash_they_stand_for_costs(scheme: str) -> None:
    costs = {"bcrypt": (4, 6), "sha256-crypt": (1000, None), "sha512-crypt": (1000, None)}
    for cost in costs.get(scheme, (None,)):
        stored = hashes.make_hash(b"s3cret", scheme, cost)
        assert hashes.timing_class(hashes.dummy_like(stored)) == hashes.timing_class(stored)
    assert hashes.timing_class(hashes.make_hash(b"x", "bcrypt", 4)) != hashes.timing_class(
        hashes.make_hash(b"x", "bcrypt", 6)
    )


@pytest.mark.parametrize("stored", EXOTIC)
def test_dummies_of_other_formats_go_the_same_way_through_crypt(stored: str) -> None:
    dummy = hashes.dummy_like(stored)
    assert hashes.timing_class(dummy) == hashes.timing_class(stored)
    assert (hashes.system_crypt(b"pw", dummy) is None) == (hashes.system_crypt(b"pw", stored) is None)
    assert not hashes.verify(b"pw", dummy)
