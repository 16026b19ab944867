"""``authn session``: the signed-in browsers (sessions of ``authn.login form``).

``list [USER]`` shows them; ``revoke USER`` ends every session of a user at once (every
Apache process refuses their cookies from the next request on). Sessions live where the
lockout's counters live: ``--dir`` is the folder of ``authn.lockout.dir`` (default
/var/lib/authn), ``--redis`` the URL of ``authn.lockout.redis``.
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import time

from authn.cli.common import ERR_FILE, Exit, note
from authn.errors import StoreUnavailable
from authn.sessions.store import RedisSessions, SessionStore, SqliteSessions

DEFAULT_DIR = "/var/lib/authn"


def _store(args: argparse.Namespace) -> SessionStore:
    if args.redis:
        return RedisSessions(args.redis)
    path = os.path.join(args.dir, "sessions.sqlite3")
    _become_owner_of(args.dir)
    if not os.path.exists(path):
        raise Exit(
            ERR_FILE,
            f"no session store at {path}; sessions live in the folder of authn.lockout.dir "
            "(give it with --dir) or in Redis (--redis URL)",
        )
    return SqliteSessions(args.dir)


def _become_owner_of(folder: str) -> None:
    """Run as root, act as the owner of the store's folder (the Apache user): the files this
    command creates or changes stay usable by Apache, and its checks of who owns what hold."""
    if os.geteuid() != 0:
        return
    try:
        st = os.stat(folder)
    except OSError as exc:
        raise Exit(ERR_FILE, f"cannot use {folder}: {exc.strerror}") from None
    if st.st_uid != 0:
        os.setgid(st.st_gid)
        os.setuid(st.st_uid)


def _audit(text: str) -> None:
    """One line for the system log (and stderr): who revoked what."""
    note(f"authn session: {text}")
    logger = logging.getLogger("authn.audit")
    try:
        handler = logging.handlers.SysLogHandler(address="/dev/log")
    except OSError:
        return
    logger.addHandler(handler)
    logger.warning("authn: %s (by uid %d)", text, os.getuid())
    logger.removeHandler(handler)
    handler.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="authn session",
        description="List or revoke the sessions of browser sign-in (authn.login form).",
        epilog="examples:\n  authn session list\n  authn session revoke alice\n"
        "  authn session revoke --redis redis://10.0.0.5:6379/0 alice",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dir", default=DEFAULT_DIR, help="the folder of authn.lockout.dir")
    parser.add_argument("--redis", help="the URL of authn.lockout.redis")
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    p_list = sub.add_parser("list", help="the sessions, newest first")
    p_list.add_argument("user", nargs="?")
    p_revoke = sub.add_parser("revoke", help="end every session of a user at once")
    p_revoke.add_argument("user")
    args = parser.parse_args(argv)
    try:
        store = _store(args)
        if args.action == "revoke":
            count = store.revoke_user(args.user)
            _audit(f"revoked {count} session(s) of user {args.user!r}")
            return 0
        now = time.time()
        for s in store.list(args.user):
            created, ends = (
                time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) for t in (s.created, s.expires)
            )
            print(f"{s.user}\tsigned in {created}\tidle {int(now - s.seen)} s\tends {ends}")
        return 0
    except StoreUnavailable as exc:
        raise Exit(ERR_FILE, str(exc)) from None
