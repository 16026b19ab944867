"""``authn lockout``: list the lockout counters and unlock users and addresses.

Which store (the one Apache uses; see docs/lockout.md):

* ``--redis URL``: the Redis store (``authn.lockout.redis``);
* ``--dir DIR``: the SQLite store in ``DIR`` (``authn.lockout.dir``);
* neither: the default SQLite store of every running Apache (``apache-<pid>.sqlite3`` in
  ``authn-lockout-<uid>`` under the Apache parent's ``TMPDIR``, default /tmp), found through
  ``/proc/<pid>/root``, so systemd's ``PrivateTmp`` (Debian's apache2.service) is seen too;
  ``--apache-pid PID`` picks one Apache.

Run as root, the command acts as the owner of the SQLite store's folder (the Apache user),
so every file SQLite creates beside the database stays the Apache user's.

An unlock deletes the counters and changes the store's unlock generation: every Apache child
drops the locks it remembers at its next request under one (SQLite: at once; Redis: within
half a second) and logs ``authn: lockout cleared by admin for ...``. The command writes one
line on stderr and the same to syslog (``authpriv``, tag ``authn``), for the audit trail.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import logging
import logging.handlers
import os
import pwd
import sys
import time
from collections.abc import Iterator

from authn.cli.common import ERR_FILE, ERR_SYNTAX, Exit, note
from authn.errors import StoreUnavailable
from authn.lockout.policy import client_key, counted_address, describe_key
from authn.lockout.stores import LockoutStore, RedisStore, SqliteStore
from authn.settings import DEFAULT_CLIENT_THRESHOLD, DEFAULT_THRESHOLD

SYSLOG_ENV = "AUTHN_SYSLOG"  #: where the audit line goes (a socket path); default /dev/log
LIST_LIMIT = 100_000


def _apache_parents() -> list[int]:
    """The pids of running Apache parent processes (an apache2/httpd whose parent is not)."""
    names = {}
    for entry in glob.glob("/proc/[0-9]*/stat"):
        with contextlib.suppress(OSError):
            with open(entry, encoding="utf-8", errors="replace") as fh:
                text = fh.read()
            comm = text[text.index("(") + 1 : text.rindex(")")]
            ppid = int(text[text.rindex(")") + 2 :].split()[1])
            names[int(entry.split("/")[2])] = (comm, ppid)
    apache = {"apache2", "httpd"}
    return sorted(
        pid
        for pid, (comm, ppid) in names.items()
        if comm in apache and names.get(ppid, ("",))[0] not in apache
    )


def _tmpdir_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            pairs = fh.read().split(b"\0")
    except OSError:
        return "/tmp"  # noqa: S108 - where Apache itself would look
    env = dict(p.decode("utf-8", "replace").split("=", 1) for p in pairs if b"=" in p)
    return next((env[v] for v in ("TMPDIR", "TEMP", "TMP") if env.get(v)), "/tmp")  # noqa: S108


def default_databases(pids: list[int]) -> list[str]:
    """The default SQLite databases of these Apache parents that exist."""
    found = []
    for pid in pids:
        tmp = _tmpdir_of(pid).lstrip("/")
        pattern = os.path.join(f"/proc/{pid}/root", tmp, "authn-lockout-*", f"apache-{pid}.sqlite3")
        found += sorted(glob.glob(pattern))
    return found


def _stores(args: argparse.Namespace) -> list[LockoutStore]:
    if args.redis is not None:
        try:
            return [RedisStore(args.redis)]
        except StoreUnavailable as exc:
            raise Exit(ERR_FILE, str(exc)) from None
        except Exception as exc:  # a bad URL found by redis-py
            raise Exit(ERR_SYNTAX, f"--redis {args.redis!r}: {exc}") from None
    if args.dir is not None:
        path = os.path.join(args.dir, "lockout.sqlite3")
        if not os.path.isfile(path):
            raise Exit(
                ERR_FILE,
                f"--dir {args.dir}: no lockout.sqlite3 there (nothing counted yet, or not the "
                "folder of authn.lockout.dir)",
            )
        return [_sqlite(path)]
    pids = [args.apache_pid] if args.apache_pid is not None else _apache_parents()
    paths = default_databases(pids)
    if not paths:
        which = f"Apache {args.apache_pid}" if args.apache_pid is not None else "any running Apache"
        raise Exit(
            ERR_FILE,
            f"no default lockout store of {which} (nothing counted yet, or the store is "
            "elsewhere): name it with --dir (authn.lockout.dir) or --redis (authn.lockout.redis)",
        )
    return [_sqlite(path) for path in paths]


def _sqlite(path: str) -> SqliteStore:
    folder = os.path.dirname(path)
    try:  # opened before becoming the Apache user, who may not reach /proc/<pid>/root
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise Exit(ERR_FILE, f"{folder}: {exc.strerror}") from None
    _become_owner(fd, folder)
    store = SqliteStore(f"/proc/self/fd/{fd}", os.path.basename(path))
    store.description = f"sqlite:{path}"
    return store


def _become_owner(fd: int, folder: str) -> None:
    """As root, act as the folder's owner: files SQLite makes beside the database (its
    write-ahead log, shared memory, our lock file) must stay the Apache user's."""
    st = os.fstat(fd)
    if os.geteuid() == st.st_uid:
        return
    if os.geteuid() != 0:
        raise Exit(
            ERR_FILE,
            f"{folder} belongs to uid {st.st_uid}: run this as root or as that user "
            f"(sudo -u {_user_name(st.st_uid)} authn lockout ...)",
        )
    os.setgroups([])
    os.setresgid(st.st_gid, st.st_gid, st.st_gid)
    os.setresuid(st.st_uid, st.st_uid, st.st_uid)


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _audit(message: str) -> None:
    """One line on stderr and in syslog (authpriv): who unlocked what."""
    note(f"authn lockout: {message}")
    address = os.environ.get(SYSLOG_ENV, "/dev/log")
    try:
        handler = logging.handlers.SysLogHandler(
            address=address, facility=logging.handlers.SysLogHandler.LOG_AUTHPRIV
        )
    except OSError as exc:
        note(f"authn lockout: not written to syslog ({address}: {exc.strerror})")
        return
    who = os.environ.get("SUDO_USER") or _user_name(os.getuid())
    record = logging.LogRecord("authn", logging.INFO, __file__, 0, f"authn: {message} (by {who})", None, None)
    try:
        handler.emit(record)
    finally:
        handler.close()


def _each(stores: list[LockoutStore]) -> Iterator[tuple[LockoutStore, list[tuple[str, float, int]]]]:
    """Each store with its live counters: (key, expires, failures)."""
    for store in stores:
        try:
            rows = store.top(LIST_LIMIT)
        except StoreUnavailable as exc:
            raise Exit(ERR_FILE, str(exc)) from None
        yield store, [(key, count.expires, count.failures) for key, count in rows]


def _matches(key: str, user: str | None, address: str | None) -> bool:
    kind, client, account = describe_key(key)
    if address is not None and client != counted_address(address):
        return False
    if user is None:
        return True  # --address: the address's own counter and every pair from it
    if kind != "pair" or account is None:
        return False
    return account == user or _dn_login(account) == user.lower()


def _dn_login(dn: str) -> str:
    """The value of a DN's first RDN, lower case (``uid=alice,ou=people,...`` -> ``alice``):
    the lockout counts a directory login under the entry's DN."""
    first = dn.split(",", 1)[0]
    return first.split("=", 1)[1].strip().lower() if "=" in first else ""


def _list(args: argparse.Namespace) -> int:
    now = time.time()
    for store, rows in _each(_stores(args)):
        print(
            f"# {store.description}: locked at {args.threshold} failures per (user, address), "
            f"{args.client_threshold} per address"
        )
        for key, expires, failures in sorted(rows, key=lambda r: (-r[2], r[0])):
            kind, client, account = describe_key(key)
            limit = args.threshold if kind == "pair" else args.client_threshold
            mark = "LOCKED" if failures >= limit else "counting"
            who = f"user={account} " if account is not None else ""
            print(
                f"{mark:8} {who}address={client} failures={failures} resets_in={max(0, int(expires - now))}s"
            )
    return 0


def _unlock(args: argparse.Namespace) -> int:
    user, address = args.user, args.address if args.address is not None else args.user_address
    if user is None and address is None:
        raise Exit(ERR_SYNTAX, "name a USER (and optionally its ADDRESS) or --address ADDRESS")
    if args.address is not None and args.user_address is not None:
        raise Exit(ERR_SYNTAX, "give the address once: USER ADDRESS, or --address ADDRESS alone")
    what = (f"user {user}" if user is not None else "") + (
        f"{' from ' if user is not None else ''}address {address}" if address is not None else ""
    )
    total = 0
    for store, rows in _each(_stores(args)):
        keys = [key for key, _, _ in rows if _matches(key, user, address)]
        if user is None and address is not None and client_key(address) not in keys:
            keys.append(client_key(address))  # harmless when absent
        try:
            store.unlock(keys)
        except StoreUnavailable as exc:
            raise Exit(ERR_FILE, str(exc)) from None
        found = [k for k in keys if any(k == key for key, _, _ in rows)]
        total += len(found)
        _audit(f"unlocked {what} in {store.description}: {len(found)} counter(s) cleared")
    if not total:
        note(f"authn lockout: nothing was counted for {what}; nothing to unlock")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="authn lockout",
        description="List the lockout counters, or unlock a user or an address at once. "
        "Every Apache child sees an unlock at its next request.",
        epilog="examples:\n  authn lockout list\n  authn lockout unlock alice\n"
        "  authn lockout unlock alice 203.0.113.7\n  authn lockout unlock --address 203.0.113.7\n"
        "  authn lockout --redis redis://127.0.0.1:6379/0 list",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--dir", help="the SQLite store's folder (authn.lockout.dir)")
    where.add_argument("--redis", metavar="URL", help="the Redis store (authn.lockout.redis)")
    where.add_argument(
        "--apache-pid", type=int, metavar="PID", help="the default store of this Apache parent"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="the live counters, highest first")
    listing.add_argument("--threshold", type=int, default=DEFAULT_THRESHOLD, help="authn.lockout.threshold")
    listing.add_argument(
        "--client-threshold",
        type=int,
        default=DEFAULT_CLIENT_THRESHOLD,
        help="authn.lockout.client_threshold",
    )
    unlock = commands.add_parser(
        "unlock", help="clear the counters of a user, a (user, address) or an address"
    )
    unlock.add_argument("user", nargs="?", metavar="USER", help="login (or the DN, for a directory)")
    unlock.add_argument("user_address", nargs="?", metavar="ADDRESS", help="only from this address")
    unlock.add_argument("--address", help="the address itself (its counter and every user's from it)")
    args = parser.parse_args(argv)
    if args.command == "list":
        return _list(args)
    return _unlock(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
