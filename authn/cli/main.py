"""``authn``: the admin command. One sub-command per job; see ``authn --help``.

Every sub-command prints its results on stdout, its messages on stderr (one line each,
prefixed ``authn <command>:``) and exits with htpasswd's codes (:mod:`authn.cli.common`).
"""

from __future__ import annotations

import argparse
import os
import sys

from authn import __version__
from authn.cli import common
from authn.cli.common import Exit

HELP = """\
usage: authn COMMAND [ARGS]

Manage the password and group files of authn (and of Apache's mod_authn_file), and check
an Apache configuration.

commands:
  passwd         add, change, delete or check a password (htpasswd's command line)
  list           list the users of a password file, their hash scheme, weak hashes
  disable        lock users out, keeping their password (enable restores it)
  enable         let disabled users in again
  import         add many users from CSV or standard input, hashed on all cores
  group          add or remove users in an AuthGroupFile-format group file
  otp            enroll users in the second factor of sign-in (TOTP), list, remove
  session        list the signed-in browsers, revoke a user's sessions
  check          find the Apache configuration mistakes that switch protection off
  lockout        list the lockout counters, unlock a user or an address
  apache-config  print the Apache lines that load authn from this install

Run 'authn COMMAND --help' for the options of a command, 'authn --version' for the version.

examples:
  authn passwd -c /etc/apache2/authn/users alice
  authn list /etc/apache2/authn/users
  authn check /etc/apache2/apache2.conf
"""


def _users_parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("file", help="htpasswd-format password file")
    parser.add_argument("users", nargs="+", metavar="USER")
    return parser


def _list(argv: list[str]) -> int:
    from authn.cli.users import list_users

    parser = argparse.ArgumentParser(
        prog="authn list",
        description="List the users of a password file with their hash scheme and cost, "
        "whether they are disabled, and why a hash is weak (apr1, {SHA}, crypt, low bcrypt "
        "cost). Users are read as Apache reads them: the first line of a user wins.",
    )
    parser.add_argument("file", help="htpasswd-format password file")
    parser.add_argument("--json", action="store_true", help="one JSON array, for scripts")
    parser.add_argument("--weak", action="store_true", help="only users with a weak hash")
    args = parser.parse_args(argv)
    return list_users(args.file, as_json=args.json, weak_only=args.weak)


def _disable(argv: list[str]) -> int:
    from authn.cli.users import set_disabled

    args = _users_parser(
        "authn disable",
        "Lock users out without losing their password: the hash gets a '!' in front, which "
        "native Apache and authn both refuse. 'authn enable' removes it.",
    ).parse_args(argv)
    return set_disabled(args.file, args.users, disable=True)


def _enable(argv: list[str]) -> int:
    from authn.cli.users import set_disabled

    args = _users_parser(
        "authn enable", "Let disabled users in again with the password they had."
    ).parse_args(argv)
    return set_disabled(args.file, args.users, disable=False)


def _passwd(argv: list[str]) -> int:
    from authn.cli.passwd import run

    return run(argv)


def _import(argv: list[str]) -> int:
    from authn.cli.import_ import main

    return main(argv)


def _group(argv: list[str]) -> int:
    from authn.cli.group import main

    return main(argv)


def _check(argv: list[str]) -> int:
    from authn.cli.check import main

    return main(argv)


def _lockout(argv: list[str]) -> int:
    from authn.cli.lockout import main

    return main(argv)


def _apache_config(argv: list[str]) -> int:
    from authn.cli.apache_config import main

    return main(argv)


def _otp(argv: list[str]) -> int:
    from authn.cli.otp import main

    return main(argv)


def _session(argv: list[str]) -> int:
    from authn.cli.session import main

    return main(argv)


COMMANDS = {
    "passwd": _passwd,
    "list": _list,
    "disable": _disable,
    "enable": _enable,
    "import": _import,
    "group": _group,
    "otp": _otp,
    "session": _session,
    "check": _check,
    "lockout": _lockout,
    "apache-config": _apache_config,
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(HELP, end="")
        return 0 if args else common.ERR_SYNTAX
    if args[0] in ("-V", "--version"):
        print(f"authn {__version__}")
        return 0
    name, rest = args[0], args[1:]
    command = COMMANDS.get(name)
    if command is None:
        print(f"authn: unknown command {name!r}; see 'authn --help'", file=sys.stderr)
        return common.ERR_SYNTAX
    try:
        return command(rest)
    except Exit as stop:
        if stop.message:
            print(f"authn {name}: {stop.message}", file=sys.stderr)
        return stop.code
    except KeyboardInterrupt:
        print(f"\nauthn {name}: interrupted; nothing was changed", file=sys.stderr)
        return common.ERR_INTERRUPTED
    except BrokenPipeError:
        # the reader went away (authn list | head): no traceback, and none at exit either
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
