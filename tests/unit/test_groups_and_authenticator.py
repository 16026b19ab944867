"""Group files and the authenticator's rules (empty password, source order, group rule)."""

from pathlib import Path

from authn import hashes
from authn.authenticator import Authenticator
from authn.settings import parse_settings
from authn.sources.groupfile import parse_group_file
from authn.verdict import Outcome, Verdict


def test_group_file_rules() -> None:
    table = parse_group_file(b"# c\nadmins: alice bob\nweb team: carol 'dan d'\nadmins: erin\nbad line\n")
    assert table["alice"] == {"admins"}
    assert table["carol"] == {"web team"}
    assert table["dan d"] == {"web team"}
    assert table["erin"] == {"admins"}


def make(tmp_path: Path, **extra: str) -> Authenticator:
    users = tmp_path / "users"
    users.write_text(f"alice:{hashes.make_hash(b'pw', 'apr1')}\nbob:{hashes.make_hash(b'pw', 'apr1')}\n")
    groups = tmp_path / "groups"
    groups.write_text("web team: alice\n")
    options = [
        ("authn.file", str(users)),
        ("authn.groupfile", str(groups)),
        ("authn.cache.dir", str(tmp_path / "cache")),
        *extra.items(),
    ]
    return Authenticator(parse_settings(options))


def test_empty_password_is_refused_before_any_source(tmp_path: Path) -> None:
    verdict = make(tmp_path).authenticate("alice", b"")
    assert verdict.outcome is Outcome.DENIED and verdict.reason == "empty password"


def test_group_rule(tmp_path: Path) -> None:
    auth = make(tmp_path, **{"authn.require.group": "admins 'web team'"})
    assert auth.authorize("alice")
    assert not auth.authorize("bob")
    assert make(tmp_path).authorize("bob")  # no rule, no refusal


def test_lockout_identity_is_exact_for_a_file_and_folded_or_the_dn_for_a_directory(tmp_path: Path) -> None:
    users = tmp_path / "users"
    users.write_text("alice:$apr1$x$y\n")
    file_only = Authenticator(parse_settings([("authn.file", str(users)), ("authn.cache.ttl", "0")]))
    assert file_only.identity(" ALICE ") == " ALICE "  # another (unknown) user in a file
    with_ldap = Authenticator(
        parse_settings(
            [
                ("authn.source", "file ldap"),
                ("authn.file", str(users)),
                ("authn.ldap.url", "ldap://127.0.0.1:9/dc=example,dc=org?uid"),
                ("authn.cache.ttl", "0"),
            ]
        )
    )
    assert with_ldap.identity("  ALICE ") == with_ldap.identity("alice") == "alice"
    wire = "JÜRGEN  Müller".encode().decode("latin-1")  # UTF-8 bytes read as Latin-1
    assert with_ldap.identity(wire) == "jürgen müller".encode().decode("latin-1")
    # Unicode compatibility forms and special case mappings fold as the directory folds them
    for spelling in ("\uff21\uff2c\uff29\uff23\uff25", "Al\u00adice", "ali\u200bce", "\u2003alice\u00a0"):
        assert with_ldap.identity(spelling.encode().decode("latin-1")) == "alice", spelling
    assert with_ldap.identity("STRASSE") == with_ldap.identity("straße".encode().decode("latin-1"))
    # A user the directory granted counts under the entry's DN, whatever the spelling
    granted = Verdict.grant("ALICE", "ldap", attrs={"dn": ("uid=Alice,ou=People,dc=example,dc=org",)})
    assert with_ldap.identity("ALICE", granted) == "uid=alice,ou=people,dc=example,dc=org"
    # A user the file granted counts under the login, even beside a directory
    assert with_ldap.identity("ALICE", Verdict.grant("ALICE", "file")) == "ALICE"
