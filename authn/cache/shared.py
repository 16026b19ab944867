"""The machine-wide store under the verdict cache: a fixed-size table in one shared file.

Every Apache child and thread on the machine reads and writes the same file, so a credential
checked by one child is a hit in all the others. A lookup is one ``pread`` of a bucket (2 KB,
served from the page cache), a store one ``pread`` and one ``pwrite`` under the lock. The file
is not mapped: a mapping would count its pages (kernel fault-around maps 64 KB at a time, so
soon the whole file) in the resident memory of each of 20 or more children, though the page
cache holds them once for the machine. The store knows nothing of users or verdicts: it maps a
32-byte key (a MAC the caller computed) to ``(expires, generation, payload)``.

The folder (``authn.cache.dir``) holds two files, both owned by the Apache run user:

* ``key``: 32 random bytes, mode 0600, made once (write a temp file, then ``link`` it into
  place, so concurrent children agree on one key);
* ``entries``: a header and ``slots`` fixed-size slots, mode 0600.

Layout: 4-way set-associative open addressing. The first 8 bytes of the key choose a bucket
of :data:`WAYS` slots; a lookup reads the bucket and compares the key of each slot (constant
time). Each slot carries a keyed BLAKE2b tag over its content under the
secret key, so a slot read while another process was writing it (readers take no lock), or
one altered by anyone without the key, is simply a miss. Writers take ``flock`` on the file
plus a thread lock. A full bucket evicts its entry closest to expiry, so the size is bounded
by the file, whatever the traffic.

Raises :class:`CacheUnusable` (an ``OSError``) when the folder cannot be made safe: not
creatable, owned by another user, a symlink. The caller falls back to a per-process cache.
The file's geometry is fixed when it is made; a different ``slots`` later is ignored (a
mapped file must never shrink under another process). To resize, stop Apache and delete it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import hmac
import os
import secrets
import stat
import struct
import threading
import time

from authn.errors import CacheUnusable

MAGIC = b"AUTHNC01"
HEADER = struct.Struct("<8sII")  # magic, slot size, slot count
HEADER_SIZE = 64
SLOT_SIZE = 512
WAYS = 4
KEY_SIZE = 32
TAG_SIZE = 16
_META = struct.Struct("<32sd16sH")  # key, expires (unix time), generation digest, payload size
_TAG_AT = _META.size
_PAYLOAD_AT = _META.size + TAG_SIZE
MAX_PAYLOAD = SLOT_SIZE - _PAYLOAD_AT
_EMPTY_KEY = bytes(KEY_SIZE)


def _secure_dir(path: str) -> None:
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise CacheUnusable(
            exc.errno or errno.EACCES,
            f"cannot create cache folder {path}: {exc.strerror}; create it for the Apache user: "
            f"install -d -o www-data -g www-data -m 0700 {path}",
        ) from None
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise CacheUnusable(errno.ENOTDIR, f"cache folder {path} is not a folder (a symlink?)")
    if st.st_uid != os.geteuid():
        raise CacheUnusable(
            errno.EPERM,
            f"cache folder {path} belongs to uid {st.st_uid}, not to the Apache user "
            f"(uid {os.geteuid()}); chown it to the Apache user, mode 0700",
        )
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)


def _open_private(path: str, flags: int) -> int:
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    st = os.fstat(fd)
    if st.st_uid != os.geteuid() or not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise CacheUnusable(errno.EPERM, f"{path} is not a file of the Apache user")
    if st.st_mode & 0o077:
        os.fchmod(fd, 0o600)
    return fd


def _load_key(folder: str) -> bytes:
    path = os.path.join(folder, "key")
    for _ in range(50):
        try:
            fd = _open_private(path, os.O_RDONLY)
        except FileNotFoundError:
            tmp = os.path.join(folder, f".key.{os.getpid()}.{threading.get_ident()}")
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)  # left by a process that died with our pid
            fd = _open_private(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
            try:
                os.write(fd, secrets.token_bytes(KEY_SIZE))
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(tmp, path)  # atomic: exactly one child's key wins
            except FileExistsError:
                pass
            finally:
                os.unlink(tmp)
            continue
        try:
            key = os.read(fd, KEY_SIZE + 1)
        finally:
            os.close(fd)
        if len(key) == KEY_SIZE:
            return key
        time.sleep(0.01)
    raise CacheUnusable(errno.EINVAL, f"{path} does not hold a {KEY_SIZE}-byte key; delete it")


class SharedStore:
    """The table in ``folder``/entries; see the module docstring."""

    def __init__(self, folder: str, slots: int = 16384) -> None:
        _secure_dir(folder)
        self.folder = folder
        self.secret = _load_key(folder)
        path = os.path.join(folder, "entries")
        wanted = max(WAYS, slots - slots % WAYS)
        fd = _open_private(path, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                self.slots = self._check_or_init(fd, path, wanted)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._buckets = self.slots // WAYS
        self._lock = threading.Lock()

    @staticmethod
    def _check_or_init(fd: int, path: str, slots: int) -> int:
        head = os.pread(fd, HEADER.size, 0)
        if len(head) == HEADER.size:
            magic, slot_size, count = HEADER.unpack(head)
            size = os.fstat(fd).st_size
            if (
                magic == MAGIC
                and slot_size == SLOT_SIZE
                and count % WAYS == 0
                and size == HEADER_SIZE + count * SLOT_SIZE
            ):
                return int(count)
            if size:
                # Someone else's or a damaged file: never truncate what others may map.
                raise CacheUnusable(
                    errno.EINVAL, f"{path} is not an authn cache file; stop Apache and delete it"
                )
        os.ftruncate(fd, HEADER_SIZE + slots * SLOT_SIZE)
        os.pwrite(fd, HEADER.pack(MAGIC, SLOT_SIZE, slots), 0)
        return slots

    def _tag(self, meta: bytes, payload: bytes) -> bytes:
        return hashlib.blake2b(meta + payload, digest_size=TAG_SIZE, key=self.secret).digest()

    def _bucket_at(self, key: bytes) -> int:
        return HEADER_SIZE + int.from_bytes(key[:8], "little") % self._buckets * WAYS * SLOT_SIZE

    def get(self, key: bytes) -> tuple[float, bytes, bytes] | None:
        """``(expires, generation, payload)`` stored under ``key``, or None. Takes no lock."""
        bucket = os.pread(self._fd, WAYS * SLOT_SIZE, self._bucket_at(key))
        for off in range(0, len(bucket) - SLOT_SIZE + 1, SLOT_SIZE):
            if hmac.compare_digest(bucket[off : off + KEY_SIZE], key):
                slot = bucket[off : off + SLOT_SIZE]
                meta = slot[:_TAG_AT]
                _, expires, generation, size = _META.unpack(meta)
                if size > MAX_PAYLOAD:
                    return None
                payload = slot[_PAYLOAD_AT : _PAYLOAD_AT + size]
                if not hmac.compare_digest(slot[_TAG_AT:_PAYLOAD_AT], self._tag(meta, payload)):
                    return None  # torn by a concurrent writer, or tampered with
                return expires, generation, payload
        return None

    def put(self, key: bytes, expires: float, generation: bytes, payload: bytes) -> bool:
        """Store an entry; False when the payload does not fit a slot (nothing stored)."""
        if len(payload) > MAX_PAYLOAD or len(key) != KEY_SIZE or len(generation) != 16:
            return False
        meta = _META.pack(key, expires, generation, len(payload))
        record = meta + self._tag(meta, payload) + payload
        base = self._bucket_at(key)
        now = time.time()
        with self._lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                bucket = os.pread(self._fd, WAYS * SLOT_SIZE, base)
                victim, soonest = 0, float("inf")
                for off in range(0, len(bucket) - SLOT_SIZE + 1, SLOT_SIZE):
                    slot_key, slot_expires = struct.unpack_from("<32sd", bucket, off)
                    if slot_key == key or slot_key == _EMPTY_KEY or slot_expires <= now:
                        victim = off
                        break
                    if slot_expires < soonest:
                        victim, soonest = off, slot_expires
                os.pwrite(self._fd, record, base + victim)
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        return True

    def close(self) -> None:
        os.close(self._fd)
