"""The machine-wide store: a table in a shared mmap'd file."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from authn.cache.shared import HEADER_SIZE, MAX_PAYLOAD, SLOT_SIZE, WAYS, SharedStore
from authn.errors import StoreUnavailable


def key(n: int) -> bytes:
    return n.to_bytes(32, "big") if n else b"\x01" * 32


GEN = b"g" * 16


def test_round_trip_and_private_files(tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    store = SharedStore(str(folder), 64)
    assert store.get(key(1)) is None
    assert store.put(key(1), 123.5, GEN, b"payload")
    assert store.get(key(1)) == (123.5, GEN, b"payload")
    assert folder.stat().st_mode & 0o777 == 0o700
    assert (folder / "key").stat().st_mode & 0o777 == 0o600
    assert (folder / "entries").stat().st_mode & 0o777 == 0o600
    assert (folder / "entries").stat().st_size == HEADER_SIZE + 64 * SLOT_SIZE


def test_two_opens_share_key_and_entries(tmp_path: Path) -> None:
    a = SharedStore(str(tmp_path / "c"), 64)
    b = SharedStore(str(tmp_path / "c"), 4096)  # geometry is fixed by the first
    assert a.secret == b.secret
    assert b.slots == 64
    a.put(key(7), 1.0, GEN, b"x")
    assert b.get(key(7)) == (1.0, GEN, b"x")


def test_shared_across_processes(tmp_path: Path) -> None:
    folder = str(tmp_path / "c")
    SharedStore(folder, 64)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            SharedStore(folder, 64).put(key(9), 2.0, GEN, b"from child")
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert SharedStore(folder, 64).get(key(9)) == (2.0, GEN, b"from child")


def test_loose_folder_mode_is_tightened(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    SharedStore(str(folder), 64)
    assert folder.stat().st_mode & 0o777 == 0o700


def test_symlinked_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(StoreUnavailable, match="not a folder"):
        SharedStore(str(tmp_path / "link"), 64)


def test_folder_of_another_user_is_refused(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to give a folder away")
    folder = tmp_path / "c"
    folder.mkdir(mode=0o700)
    os.chown(folder, 65534, 65534)
    with pytest.raises(StoreUnavailable, match="belongs to uid 65534"):
        SharedStore(str(folder), 64)


def test_uncreatable_folder_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable, match="install -d"):
        SharedStore(str(tmp_path / "no" / "such" / "parent"), 64)


def test_foreign_file_is_not_truncated(tmp_path: Path) -> None:
    folder = tmp_path / "c"
    folder.mkdir(mode=0o700)
    (folder / "entries").write_bytes(b"something else entirely")
    with pytest.raises(StoreUnavailable, match="not an authn cache file"):
        SharedStore(str(folder), 64)
    assert (folder / "entries").read_bytes() == b"something else entirely"


def test_tampered_or_torn_slot_is_a_miss(tmp_path: Path) -> None:
    store = SharedStore(str(tmp_path / "c"), 4)  # one bucket: the first slot is ours
    store.put(key(1), 5.0, GEN, b"groups")
    with open(tmp_path / "c" / "entries", "r+b") as fh:
        fh.seek(HEADER_SIZE + 76)  # inside the payload
        fh.write(b"G")
    assert store.get(key(1)) is None


def test_size_is_bounded_and_evicts_soonest_expiry(tmp_path: Path) -> None:
    store = SharedStore(str(tmp_path / "c"), WAYS)  # a single bucket
    now = time.time()
    for n in range(1, WAYS + 1):
        store.put(key(n), now + 100 + n, GEN, b"v")
    store.put(key(99), now + 500, GEN, b"v")
    assert store.get(key(1)) is None  # the one closest to expiry went
    assert all(store.get(key(n)) is not None for n in range(2, WAYS + 1))
    assert store.get(key(99)) is not None
    assert (tmp_path / "c" / "entries").stat().st_size == HEADER_SIZE + WAYS * SLOT_SIZE


def test_expired_slot_is_reused_first(tmp_path: Path) -> None:
    store = SharedStore(str(tmp_path / "c"), WAYS)
    now = time.time()
    for n in range(1, WAYS + 1):
        store.put(key(n), now + (-1 if n == 3 else 100), GEN, b"v")
    store.put(key(50), now + 1, GEN, b"v")
    assert store.get(key(3)) is None
    assert store.get(key(1)) is not None


def test_oversized_payload_is_not_stored(tmp_path: Path) -> None:
    store = SharedStore(str(tmp_path / "c"), 64)
    assert not store.put(key(1), 1.0, GEN, b"x" * (MAX_PAYLOAD + 1))
    assert store.get(key(1)) is None
    assert store.put(key(1), 1.0, GEN, b"x" * MAX_PAYLOAD)


def test_stale_temp_key_of_a_dead_process_is_ignored(tmp_path: Path) -> None:
    import threading

    folder = tmp_path / "c"
    folder.mkdir(mode=0o700)
    (folder / f".key.{os.getpid()}.{threading.get_ident()}").write_bytes(b"old")
    store = SharedStore(str(folder), 64)
    assert len(store.secret) == 32
    assert sorted(p.name for p in folder.iterdir()) == ["entries", "key"]
