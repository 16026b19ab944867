"""Unknown users cost what wrong passwords cost: both run one full hash check of the file's
scheme and cost (behaviour checked by counting the checks, never by timing)."""

from pathlib import Path

import pytest

from authn import hashes
from authn.sources import passwordfile
from authn.sources.passwordfile import PasswordFile


def test_unknown_and_disabled_users_run_one_check_like_a_wrong_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored = hashes.make_hash(b"pw", "bcrypt", 6)
    path = tmp_path / "users"
    path.write_text(f"alice:{stored}\nbob:!{stored}\n")
    source = PasswordFile(str(path))
    calls: list[hashes.HashInfo] = []
    real_verify = hashes.verify

    def spy(password: bytes, hashed: str) -> bool:
        calls.append(hashes.identify(hashed))
        return real_verify(password, hashed)

    monkeypatch.setattr(passwordfile.hashes, "verify", spy)
    for user in ("alice", "nobody", "bob"):
        calls.clear()
        assert not source.check(user, b"wrong").granted
        assert calls == [hashes.HashInfo("bcrypt", 6)], user
