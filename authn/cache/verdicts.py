"""The verified-credential cache: granted verdicts, shared by every Apache process on the machine.

A strong hash (bcrypt) costs milliseconds, and Basic auth sends the password with every
request. This cache remembers that a (source chain, user, password) was granted, so the
check runs once per TTL on the whole machine instead of on every request.

What is stored, and what is not
-------------------------------
* The entry key is a keyed BLAKE2b (RFC 7693, a MAC) of (chain identity, user, password)
  under a secret. The password is never stored, in memory or on disk; the secret is 32 random
  bytes in ``authn.cache.dir``.
* The value is the granted verdict only (source name, groups, attributes), its expiry, and a
  digest of the generation of every source of the chain (for the password file: device,
  inode, size, mtime, ctime). A changed source makes every entry of the old generation a miss at
  once; the password file is looked at once per second.
* Denials are never stored: a wrong password never matches an entry's key, so it always runs
  the full check. Comparisons of keys and tags are constant-time.
* An entry is valid while ``now < expires <= now + ttl``: a clock stepped back, or a lowered
  ``authn.cache.ttl``, cannot stretch its life.

Two layers: a small per-process dict (:data:`LOCAL_ENTRIES` entries, no I/O, about 2 us a
hit) in front of the machine-wide :class:`authn.cache.shared.SharedStore`. When the folder
cannot be used (missing, not writable, owned by someone else), one warning is logged per
process and the store goes to the Apache user's private folder under ``$TMPDIR`` (or /tmp),
``authn-cache-<uid>``; when that fails too, the per-process layer works alone, with a
per-process secret. A request never fails because of the cache. Errors of the store during
a request count as misses.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import fields

from authn import metrics
from authn.cache.shared import SharedStore
from authn.settings import Settings
from authn.sources import CredentialSource
from authn.verdict import Verdict, decode_granted, encode_granted

log = logging.getLogger("authn")

LOCAL_ENTRIES = 1024

_stores: dict[tuple[str, int], SharedStore | None] = {}
_stores_lock = threading.Lock()
_process_secret = secrets.token_bytes(32)


def shared_store(folder: str, entries: int) -> SharedStore | None:
    """The process's store for ``folder``, opened once.

    When ``folder`` cannot be used (missing and not creatable, owned by another user), the
    store goes to the Apache user's private folder :func:`fallback_folder` (made 0700, refused
    if anyone else owns it), which every Apache process of the machine shares too, and one
    warning says so and names the fix: a missing folder must not make every process run
    every bcrypt check. None (warned once) when that fails as well: each process then keeps
    its own cache.
    """
    key = (folder, entries)
    if key in _stores:
        return _stores[key]
    with _stores_lock:
        if key not in _stores:
            try:
                _stores[key] = SharedStore(folder, entries)
            except OSError as exc:
                _stores[key] = _fallback_store(folder, entries, exc)
    return _stores[key]


def fallback_folder() -> str:
    """The Apache user's private cache folder under the temp folder (``$TMPDIR`` or /tmp),
    like the lockout's default folder."""
    tmp = next((os.environ[v] for v in ("TMPDIR", "TEMP", "TMP") if os.environ.get(v)), "/tmp")  # noqa: S108 - vetted 0700 folder
    return os.path.join(tmp, f"authn-cache-{os.geteuid()}")


def _fallback_store(folder: str, entries: int, problem: OSError) -> SharedStore | None:
    private = fallback_folder()
    try:
        store = SharedStore(private, entries)
    except OSError as exc:
        log.warning(
            "authn: cache folder %s unusable, nor %s, each Apache process keeps its own cache "
            "until Apache restarts: %s; %s",
            folder,
            private,
            problem.strerror or problem,
            exc.strerror or exc,
        )
        return None
    log.warning(
        "authn: cache folder %s unusable, the cache is in %s instead (shared by this "
        "machine's Apache processes, emptied on reboot): %s",
        folder,
        private,
        problem.strerror or problem,
    )
    return store


class _LocalLayer:
    """A bounded per-process dict: key -> (expires, generation digest, verdict)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.entries: dict[bytes, tuple[float, bytes, Verdict]] = {}
        self.lock = threading.Lock()

    def put(self, key: bytes, value: tuple[float, bytes, Verdict]) -> None:
        if self.size <= 0:
            return
        with self.lock:
            entries = self.entries
            if key not in entries and len(entries) >= self.size:
                del entries[next(iter(entries))]  # oldest first: insertion order
            entries[key] = value


_local = _LocalLayer(LOCAL_ENTRIES)


class CacheStats:
    """Per-process counters of the cache, for the status page."""

    def __init__(self) -> None:
        self.local_hits = 0
        self.shared_hits = 0
        self.misses = 0
        self.stored = 0

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


STATS = CacheStats()


def local_entries() -> int:
    """Entries held by this process's layer."""
    return len(_local.entries)


def chain_identity(settings: Settings) -> bytes:
    """What distinguishes one chain of sources from another, stable across processes.

    Every setting except the cache's own (``authn.cache.*``) counts: two locations share
    entries only when they would ask the same sources the same way. The parts are frozen
    dataclasses of str, int, bool and tuples, whose repr is the same in every process.
    """
    parts = [f"{f.name}={getattr(settings, f.name)!r}" for f in fields(settings) if f.name != "cache"]
    return "\n".join(parts).encode()


class VerdictCache:
    """The cache as one chain of sources sees it: ``lookup`` first, ``store_verdict`` after."""

    def __init__(
        self,
        identity: bytes,
        sources: Sequence[CredentialSource],
        ttl: int,
        store: SharedStore | None,
        local: _LocalLayer | None = None,
    ) -> None:
        self.ttl = ttl
        self.sources = tuple(sources)
        self.store = store
        self.local = local if local is not None else _local
        secret = store.secret if store is not None else _process_secret
        self._secret = secret  # BLAKE2b's own key (up to 64 bytes; this one has 32)
        self._prefix = len(identity).to_bytes(4, "big") + identity
        self._gen: tuple[object, bytes] = ((), b"")
        self._single = self.sources[0] if len(self.sources) == 1 else None

    def _key(self, user: str, password: bytes) -> bytes:
        """Keyed BLAKE2b (RFC 7693, a MAC in one call) of the chain identity, the user and
        the password, each length-prefixed but the last."""
        name = user.encode("utf-8", "surrogatepass")
        data = b"".join((self._prefix, len(name).to_bytes(4, "big"), name, password))
        return hashlib.blake2b(data, key=self._secret, digest_size=32).digest()

    def _generation(self) -> bytes:
        """Digest of the sources' generations (raises SourceUnavailable like the sources)."""
        single = self._single
        gens = single.generation() if single is not None else tuple(s.generation() for s in self.sources)
        last, digest = self._gen
        if gens is not last and gens != last:
            digest = hashlib.blake2b(repr(gens).encode(), digest_size=16).digest()
            self._gen = (gens, digest)
        return digest

    def lookup(self, user: str, password: bytes) -> Verdict | None:
        """The cached granted verdict for these credentials, or None (then run the check)."""
        name = user.encode("utf-8", "surrogatepass")  # self._key, inlined: the hot path
        data = b"".join((self._prefix, len(name).to_bytes(4, "big"), name, password))
        key = hashlib.blake2b(data, key=self._secret, digest_size=32).digest()
        generation = self._generation()
        now = time.time()
        hit = self.local.entries.get(key)
        if hit is not None:
            expires, gen, verdict = hit
            # the generation digest is the same object while the sources are unchanged
            same = gen is generation or hmac.compare_digest(gen, generation)
            if now < expires <= now + self.ttl and same:
                STATS.local_hits += 1
                metrics.add("cache_local_hits")
                return verdict
        shared = self._shared(user, key, generation, now)
        if shared is None:
            STATS.misses += 1
            metrics.add("cache_misses")
        else:
            STATS.shared_hits += 1
            metrics.add("cache_shared_hits")
        return shared

    def _shared(self, user: str, key: bytes, generation: bytes, now: float) -> Verdict | None:
        """The machine-wide store's granted verdict, kept in the local layer too, or None."""
        if self.store is None:
            return None
        try:
            found = self.store.get(key)
        except (OSError, ValueError) as exc:
            log.warning("authn: cache read failed, checking the password instead: %s", exc)
            return None
        if found is None:
            return None
        expires, gen, payload = found
        if not (now < expires <= now + self.ttl and hmac.compare_digest(gen, generation)):
            return None
        verdict = decode_granted(user, payload)
        self.local.put(key, (expires, gen, verdict))
        return verdict

    def store_verdict(self, user: str, password: bytes, verdict: Verdict) -> None:
        """Remember a granted verdict; anything else is ignored (failures are never cached)."""
        if not verdict.granted or verdict.user != user:
            return
        key = self._key(user, password)
        generation = self._generation()
        expires = time.time() + self.ttl
        STATS.stored += 1
        self.local.put(key, (expires, generation, verdict))
        if self.store is not None:
            try:
                self.store.put(key, expires, generation, encode_granted(verdict))
            except (OSError, ValueError) as exc:
                log.warning("authn: cache write failed, entry kept in this process only: %s", exc)


def cache_for(settings: Settings, sources: Sequence[CredentialSource]) -> VerdictCache | None:
    """The cache of a location's settings; None when ``authn.cache.ttl`` is 0."""
    part = settings.cache
    if part.ttl <= 0 or not sources:
        return None
    return VerdictCache(chain_identity(settings), sources, part.ttl, shared_store(part.dir, part.entries))
