"""``authn check``: the Apache configuration mistakes that silently switch protection off.

Each finding is one line ``FILE:LINE: what is wrong; fix: what to do``. Exit 0 when nothing
is wrong, 1 when something is, 2 when the configuration cannot be read. What is checked:

* mod_auth_basic loaded before mod_python (Debian's default order) with an authn block that
  lacks the workaround (``AuthBasicAuthoritative Off`` + ``AuthUserFile /dev/null``, as in
  conf/authn-basic.conf): every request with a password then gets 500;
* an auth block (``AuthType`` or ``PythonOption authn.source``) with no ``Require`` that
  needs a user (in it, in a <RequireAny>/<RequireAll> inside it, or merged from a parent
  <Directory>/<Location> when it has no Require of its own): Apache grants everything and
  never asks for a password; likewise when that Require is only inside <Limit>, or stands
  beside ``Require all granted``;
* ``PythonAuthenHandler``/``PythonAuthzHandler``/``PythonAccessHandler`` inside
  ``<Location>``/``<LocationMatch>``: static files and PHP behind it answer 404;
* ``PythonDebug On`` (tracebacks go to the client);
* password and group files (``authn.file``, ``authn.groupfile``, ``AuthUserFile``,
  ``AuthGroupFile``) that are missing, that the Apache user cannot read, or that sit under a
  ``DocumentRoot`` (downloadable);
* ``authn.*`` options: unknown keys and bad values (by :mod:`authn.settings`, the same rules
  the server applies), and blocks whose option set is incomplete;
* blocks that set ``authn.source`` while no ``PythonAuthenHandler authn.handlers`` stands at
  server level;
* the verified-credential cache folder (``authn.cache.dir``, default ``/var/cache/authn``)
  missing, not owned by the Apache user, or under a ``DocumentRoot``: authn then keeps a
  small cache per process and checks each password hash in full once per process.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import grp
import os
import pwd
import re
import stat
from collections.abc import Iterable

from authn.errors import ConfigError
from authn.httpd.config import Config, Directive, Section, read_config
from authn.settings import ACTIVATE_AUTHN, ACTIVATE_AUTHZ, OPTIONS, PREFIX, Settings, parse_settings

AUTH_HANDLERS = ("pythonauthenhandler", "pythonauthzhandler", "pythonaccesshandler")
USER_REQUIRES = ("valid-user", "user", "group", "ldap-user", "ldap-group", "ldap-dn", "file-group")
DEFAULT_RUN_USER = "www-data"
WARNING = "warning: "
#: sections read as if true: their lines stand at server level when nothing else surrounds them
CONDITIONALS = ("ifdefine", "ifmodule", "ifversion", "ifdirective", "iffile", "ifsection")


class Findings:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, where: str, problem: str, fix: str) -> None:
        line = f"{where}: {problem}; fix: {fix}"
        if line not in self.lines:
            self.lines.append(line)

    def warn(self, where: str, problem: str, fix: str) -> None:
        """Something to fix that makes no 500 and grants nothing it should refuse: printed,
        but the exit status stays 0 for it."""
        self.add(where, f"{WARNING}{problem}", fix)


def _options(directives: Iterable[Directive]) -> list[tuple[Directive, str, str]]:
    out = []
    for d in directives:
        if d.name == "pythonoption" and d.args and d.args[0].startswith(PREFIX):
            out.append((d, d.args[0], d.args[1] if len(d.args) > 1 else ""))
    return out


def _effective(config: Config, block: tuple[Section, ...]) -> list[Directive]:
    """The directives that apply inside ``block``: its own and those of the sections around."""
    return [d for d in config.directives if block[: len(d.sections)] == d.sections]


def _module_order(config: Config) -> tuple[Directive | None, Directive | None]:
    basic = python = None
    for d in config.directives:
        if d.name == "loadmodule" and d.args:
            if d.args[0] == "auth_basic_module" and basic is None:
                basic = d
            elif d.args[0] == "python_module" and python is None:
                python = d
    return basic, python


def check(config: Config, *, fragment: bool = False) -> list[str]:
    """The findings for ``config``; ``fragment``: a file without the server-level part (a
    vhost alone), whose server-level checks are skipped."""
    findings = Findings()
    for problem in config.problems:
        findings.add(problem.split(": ", 1)[0], problem.split(": ", 1)[-1], "correct the file")
    _check_debug(config, findings)
    _check_handler_places(config, findings)
    _check_options(config, findings)
    _check_blocks(config, findings, fragment)
    _check_files(config, findings)
    _check_cache_folders(config, findings)
    _check_python_path(config, findings)
    _check_htaccess(config, findings)
    _check_status_scope(config, findings)
    return findings.lines


def _check_status_scope(config: Config, findings: Findings) -> None:
    """The status page outside every <VirtualHost> of a server that has some: it then
    answers on every site."""
    if not any(s.name == "virtualhost" for d in config.directives for s in d.sections):
        return
    for d in config.directives:
        if (
            d.name == "pythonhandler"
            and d.args
            and d.args[0].endswith("::statushandler")
            and not any(s.name == "virtualhost" for s in d.sections)
        ):
            findings.add(
                d.where,
                "the authn status page stands outside every <VirtualHost>, so every site of the "
                "server serves it (counters, user names and addresses of the lockout)",
                "Include conf/authn-status.conf inside the one <VirtualHost> meant for admins",
            )


MAX_FOLDERS_WALKED = 20_000  #: per <Directory>, so a huge tree cannot make the check slow


def _htaccess_files(config: Config) -> list[str]:
    """The access files (``AccessFileName``, default .htaccess) under each <Directory> whose
    AllowOverride lets them set options, in a bounded walk."""
    names = [a for d in config.directives if d.name == "accessfilename" and not d.sections for a in d.args]
    names = names or [".htaccess"]
    overrides: dict[str, bool] = {}
    for d in config.directives:
        if d.name == "allowoverride" and d.sections and d.sections[-1].name == "directory":
            section = d.sections[-1]
            if section.args and section.args[0] != "~" and not glob.has_magic(section.args[0]):
                overrides[section.args[0]] = [a.lower() for a in d.args] != ["none"]
    found: list[str] = []
    for top, allowed in sorted(overrides.items()):
        if not allowed or top == "/" or not os.path.isdir(top):
            continue
        for walked, (folder, subfolders, files) in enumerate(os.walk(top)):
            if walked >= MAX_FOLDERS_WALKED:
                break
            subfolders[:] = [f for f in subfolders if not f.startswith(".")]
            found += [os.path.join(folder, n) for n in names if n in files]
    return sorted(set(found))


def _check_htaccess(config: Config, findings: Findings) -> None:
    """authn options in .htaccess files, by the same rules: unknown keys, bad values,
    incomplete sets and unreadable files (each makes the requests under it answer 500)."""
    for path in _htaccess_files(config):
        local = read_config(path)
        _check_options(local, findings)
        local.directives = [
            dataclasses.replace(
                d, sections=(*d.sections, Section("directory", (os.path.dirname(path),), path, 1))
            )
            for d in local.directives
        ]
        opts = _options(local.directives)
        if ACTIVATE_AUTHN in {key for _, key, _ in opts}:
            try:
                parse_settings([(key, value) for _, key, value in opts if key in OPTIONS])
            except ConfigError as exc:
                findings.add(
                    f"{path}:{opts[0][0].line}", str(exc), "add or correct the PythonOption line it names"
                )
        for d in config.directives:
            if d.name == "user" and not d.sections:
                local.directives.insert(0, d)
        _check_files(local, findings)


#: where /usr/bin/python3 finds packages after the PythonPath (a Debian package of authn)
SYSTEM_PACKAGES = ("/usr/lib/python3/dist-packages", *glob.glob("/usr/local/lib/python3*/dist-packages"))


def _holds_authn(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, "authn", "__init__.py"))


_QUOTED = re.compile(r"'([^']*)'|\"([^\"]*)\"")


def _check_python_path(config: Config, findings: Findings) -> None:
    """A PythonPath whose folders do not hold authn (AUTHN_SITE_PACKAGES wrong, or left over
    from another Python after an upgrade): every request answers 500 (No module named 'authn')."""
    uses_authn = any(
        d.args and d.args[0].startswith("authn.")
        for d in config.directives
        if d.name in (*AUTH_HANDLERS, "pythonimport")
    )
    if not uses_authn:
        return
    for d in config.directives:
        if d.name != "pythonpath" or not d.args:
            continue
        folders = [a or b for a, b in _QUOTED.findall(d.args[0])]
        if not folders or any(_holds_authn(f) for f in (*folders, *SYSTEM_PACKAGES)):
            continue  # found first on the PythonPath, or in the system's path after it
        shown = ", ".join(folders)
        findings.add(
            d.where,
            f"PythonPath names {shown}, which holds no authn package (AUTHN_SITE_PACKAGES wrong, or the "
            "venv was built for another Python): every protected request answers 500, No module "
            "named 'authn'",
            "run 'authn apache-config' for the right AUTHN_SITE_PACKAGES (rebuild the venv from "
            "/usr/bin/python3 after a Python upgrade)",
        )


def _check_debug(config: Config, findings: Findings) -> None:
    for d in config.directives:
        if d.name == "pythondebug" and d.args and d.args[0].lower() == "on":
            findings.add(
                d.where,
                "PythonDebug On sends Python tracebacks (paths, settings) to every client",
                "set PythonDebug Off",
            )


def _check_handler_places(config: Config, findings: Findings) -> None:
    for d in config.directives:
        if d.name in AUTH_HANDLERS and any(s.name in ("location", "locationmatch") for s in d.sections):
            findings.add(
                d.where,
                f"{d.args[0] if d.args else ''} {d.name} inside {d.sections[-1]}: mod_python then "
                "skips mapping the URL to a file, so static files and PHP answer 404".strip(),
                "remove it here and Include conf/authn.conf once at server level; keep only the "
                "PythonOption lines in the <Location>",
            )


def _check_options(config: Config, findings: Findings) -> None:
    for d, key, value in _options(config.directives):
        option = OPTIONS.get(key)
        if option is None:
            try:
                parse_settings([(key, value)])
            except ConfigError as exc:
                findings.add(d.where, str(exc), "use one of the keys in the README's option table")
            continue
        try:
            option.parse(value)
        except ValueError as exc:
            findings.add(d.where, f"{key}: bad value {value!r}: {exc}", "correct the value")


def _auth_blocks(config: Config) -> dict[tuple[Section, ...], Directive]:
    """Each section that sets AuthType or authn.source itself, with the line that does."""
    blocks: dict[tuple[Section, ...], Directive] = {}
    for d in config.directives:
        if d.name == "authtype" or (d.name == "pythonoption" and d.args and d.args[0] == ACTIVATE_AUTHN):
            if d.sections and d.sections not in blocks:
                blocks[d.sections] = d
    return blocks


def _check_sign_in(
    config: Config,
    block: tuple[Section, ...],
    names: dict[str, Directive],
    basic_first: bool,
    where: str,
    findings: Findings,
) -> None:
    """A block with ``authn.login form``: its AuthType, HTTPS, and the sign-in pages."""
    authtype = names.get("authtype")
    if basic_first and authtype is not None and authtype.args and authtype.args[0].lower() == "basic":
        findings.add(
            where,
            f"{block[-1]} sets authn.login form with AuthType Basic: mod_auth_basic, loaded before "
            "mod_python, answers every request without credentials itself (401), so browsers get "
            "a password dialog and never the sign-in page",
            "Include conf/authn-form.conf instead of conf/authn-basic.conf",
        )
    if not any(
        d.name == "pythonhandler" and d.args and "loginhandler" in d.args[0] for d in config.directives
    ):
        findings.warn(
            where,
            f"{block[-1]} sets authn.login form but no sign-in pages are configured: browsers "
            "are sent to /authn/login and get 404",
            "Include conf/authn-login.conf at server level",
        )
    vhost = next((s for s in block if s.name == "virtualhost"), None)
    encrypted = any(
        d.name == "sslengine" and d.args and d.args[0].lower() == "on"
        for d in config.directives
        if vhost is None or vhost in d.sections
    )
    if not encrypted:
        findings.warn(
            where,
            f"{block[-1]} signs browsers in with a form over plain HTTP: passwords and session "
            "cookies cross the network in clear (no 'SSLEngine on' in its virtual host)",
            "serve it over HTTPS (or make sure a TLS proxy in front does)",
        )


def _check_blocks(config: Config, findings: Findings, fragment: bool) -> None:
    basic, python = _module_order(config)
    basic_first = basic is not None and python is not None and basic_before(config, basic, python)

    def at_server_level(directive: str) -> bool:
        return any(
            d.name == directive and d.args and d.args[0] == "authn.handlers"
            for d in config.directives
            if not any(s.name in ("location", "locationmatch") for s in d.sections)
        )

    handler_at_server_level = fragment or at_server_level("pythonauthenhandler")
    authz_at_server_level = fragment or at_server_level("pythonauthzhandler")
    for block, first in _auth_blocks(config).items():
        where = f"{block[-1].file}:{block[-1].line}"
        effective = _effective(config, block)
        names = {d.name: d for d in effective}
        authtype = names.get("authtype")
        if authtype is not None and authtype.args and authtype.args[0].lower() == "none":
            continue
        requires = [d for d in effective if d.name == "require"] + _nested_requires(
            config, block, REQUIRE_CONTAINERS
        )
        if not any(d.sections[: len(block)] == block for d in requires):
            requires += _inherited_requires(config, block)  # no Require of its own: merged
        limited = _nested_requires(config, block, REQUIRE_CONTAINERS + LIMITS)
        if not any(_needs_user(d) for d in requires):
            if any(_needs_user(d) for d in limited):
                findings.add(
                    where,
                    f"{block[-1]} asks for a user only inside <Limit>/<LimitExcept>: every other "
                    "method (POST, PUT, DELETE...) is granted without a password",
                    "move the Require line out of <Limit> (wrap it in <RequireAll> with a "
                    "'Require method' line if some methods must stay open)",
                )
            else:
                findings.add(
                    where,
                    f"{block[-1]} sets up authentication ({first.where}) but has no Require that "
                    "needs a user, so Apache grants every request and never asks for a password",
                    "add 'Require valid-user' (or Require user/group ...) to the block",
                )
        own = [d for d in config.directives if d.name == "require" and d.sections == block]
        granted = [d for d in own if [a.lower() for a in d.args[:2]] == ["all", "granted"]]
        if granted and any(_needs_user(d) for d in own):
            findings.add(
                granted[0].where,
                f"'Require all granted' beside a Require that needs a user in {block[-1]}: "
                "Require lines of one block are alternatives, so every request is granted "
                "and nobody is asked for a password",
                "remove 'Require all granted' (or use <RequireAll>/<RequireAny> on purpose)",
            )
        opts = _options(effective)
        keys = {key for _, key, _ in opts}
        if ACTIVATE_AUTHZ in keys and ACTIVATE_AUTHN not in keys and not authz_at_server_level:
            findings.add(
                where,
                f"{block[-1]} sets {ACTIVATE_AUTHZ} for users another module authenticates, but "
                "no 'PythonAuthzHandler authn.handlers' stands at server level: the group rule "
                "is never applied",
                "uncomment PythonAuthzHandler in conf/authn.conf (or let authn authenticate: "
                "PythonOption authn.source file)",
            )
        if ACTIVATE_AUTHN not in keys:
            continue
        try:
            settings = parse_settings([(key, value) for _, key, value in opts if key in OPTIONS])
        except ConfigError as exc:
            findings.add(where, f"{block[-1]}: {exc}", "add or correct the PythonOption line it names")
        else:
            if settings.login.form:
                _check_sign_in(config, block, names, basic_first, where, findings)
        if not handler_at_server_level:
            findings.add(
                where,
                f"{block[-1]} sets {ACTIVATE_AUTHN} but no 'PythonAuthenHandler authn.handlers' "
                "stands at server level, so authn never runs",
                "Include conf/authn.conf in the main server config (see 'authn apache-config')",
            )
        off = names.get("authbasicauthoritative")
        workaround = off is not None and off.args and off.args[0].lower() == "off"
        is_basic = authtype is None or not authtype.args or authtype.args[0].lower() == "basic"
        if basic_first and not workaround and is_basic:  # another AuthType: mod_auth_basic declines
            assert basic is not None
            findings.add(
                where,
                f"mod_auth_basic is loaded ({basic.where}) before mod_python, and {block[-1]} "
                "does not make it step aside: every request with a password gets 500",
                "Include conf/authn-basic.conf in the block (AuthBasicAuthoritative Off and "
                "AuthUserFile /dev/null), or load mod_python first",
            )


#: sections inside an auth block whose Require lines still apply to every request of it
REQUIRE_CONTAINERS = ("requireany", "requireall", "ifmodule", "ifdefine", "ifversion")
#: ... and those whose Require lines apply to some methods only
LIMITS = ("limit", "limitexcept")


def _needs_user(directive: Directive) -> bool:
    return bool(directive.args) and directive.args[0].lower() in USER_REQUIRES


def _nested_requires(
    config: Config, block: tuple[Section, ...], containers: tuple[str, ...]
) -> list[Directive]:
    """Require lines in ``containers`` (<RequireAny>, <IfModule>...) inside ``block``:
    ``<RequireAny> Require ip ... / Require valid-user </RequireAny>`` needs a user too."""
    depth = len(block)
    return [
        d
        for d in config.directives
        if d.name == "require"
        and len(d.sections) > depth
        and d.sections[:depth] == block
        and all(s.name in containers for s in d.sections[depth:])
    ]


def _inherited_requires(config: Config, block: tuple[Section, ...]) -> list[Directive]:
    """Require lines of a <Directory> (or <Location>) over a parent path of ``block``'s, in
    the same surrounding sections: Apache merges them into the block when it has none."""
    last = block[-1]
    if last.name not in ("directory", "location") or not last.args or last.args[0] == "~":
        return []
    path = last.args[0].rstrip("/")
    out = []
    for d in config.directives:
        if d.name != "require" or len(d.sections) != len(block) or d.sections[:-1] != block[:-1]:
            continue
        parent = d.sections[-1]
        if parent.name != last.name or not parent.args or parent.args[0] == "~" or parent == last:
            continue
        base = parent.args[0].rstrip("/")
        if path.startswith(base + "/") or base == "":
            out.append(d)
    return out


def basic_before(config: Config, basic: Directive, python: Directive) -> bool:
    return config.directives.index(basic) < config.directives.index(python)


def _run_user(config: Config) -> str:
    for d in config.directives:
        if d.name == "user" and d.args and not d.sections:
            return d.args[0]
    return DEFAULT_RUN_USER


def _can_read(path: str, user: str) -> str | None:
    """None when ``user`` can read ``path``, else why not."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return f"the Apache user {user} does not exist on this machine"
    uid = entry.pw_uid
    gids = {entry.pw_gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}
    if uid == 0:
        return None
    parts = os.path.abspath(path).split(os.sep)
    for i in range(1, len(parts) + 1):
        current = os.sep.join(parts[:i]) or os.sep
        try:
            st = os.stat(current)
        except OSError as exc:
            return f"{current}: {exc.strerror}"
        need = stat.S_IROTH if i == len(parts) else stat.S_IXOTH
        shift = 6 if st.st_uid == uid else 3 if st.st_gid in gids else 0
        if not st.st_mode & (need << shift):
            what = "read" if i == len(parts) else "enter"
            return f"{user} cannot {what} {current} (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def _document_root_over(config: Config, path: str) -> str | None:
    """The DocumentRoot that ``path`` lies under (so a web client could fetch it), or None."""
    real = os.path.realpath(path)
    for d in config.directives:
        if d.name == "documentroot" and d.args:
            root = os.path.realpath(d.args[0])
            if os.path.commonpath([real, root]) == root:
                return root
    return None


#: options and directives that name a file Apache must read: what the file is, how to make it
FILE_OPTIONS = {
    "authuserfile": ("password", "create it with 'authn passwd -c FILE USER'"),
    "authgroupfile": ("group", "create it with 'authn group add -c FILE GROUP USER'"),
    "authn.file": ("password", "create it with 'authn passwd -c FILE USER'"),
    "authn.groupfile": ("group", "create it with 'authn group add -c FILE GROUP USER'"),
    "authn.ldap.bind_password_file": ("secret", "write the service account's password in it, mode 0640"),
    "authn.ldap.ca_file": (
        "ca",
        "correct the path to the PEM file of the CA that signed the directory's certificate",
    ),
}
#: kinds whose content nobody but Apache may read (hashes can be guessed offline)
SECRET_KINDS = ("password", "secret")


def _named_files(config: Config) -> Iterable[tuple[Directive, str, str]]:
    """(directive, option or directive name, path) for each file the configuration names."""
    for d in config.directives:
        if d.name in ("authuserfile", "authgroupfile") and d.args:
            yield d, d.name, d.args[0]
        elif d.name == "pythonoption" and len(d.args) > 1 and d.args[0] in FILE_OPTIONS:
            yield d, d.args[0], d.args[1]


def _check_files(config: Config, findings: Findings) -> None:
    user = _run_user(config)
    for d, option, path in _named_files(config):
        if path == "/dev/null" or not os.path.isabs(path):
            continue
        kind, create = FILE_OPTIONS[option]
        if not os.path.exists(path):
            answer = "every request there answers 500"
            findings.add(d.where, f"{option}: {path} does not exist, {answer}", create.replace("FILE", path))
            continue
        why = _can_read(path, user)
        if why is not None:
            findings.add(
                d.where,
                f"{option}: the Apache user cannot read {path}: {why}; every request there answers 500",
                f"chgrp {user} {path} && chmod 0640 {path}",
            )
        root = _document_root_over(config, path)
        if root is not None and kind in SECRET_KINDS:
            findings.add(
                d.where,
                f"{path} is under the DocumentRoot {root}: anybody can download it",
                "move it outside every DocumentRoot, e.g. /etc/apache2/authn/",
            )
        try:
            mode = os.stat(path).st_mode
        except OSError:
            continue
        if kind in SECRET_KINDS and mode & stat.S_IROTH:
            what = "copy the hashes and guess the passwords offline" if kind == "password" else "read it"
            findings.add(
                d.where,
                f"{option}: {path} is readable by every local user (mode {stat.S_IMODE(mode):04o}): "
                f"anyone with a shell can {what}",
                f"chgrp {user} {path} && chmod 0640 {path}",
            )


def _cache_folders(config: Config) -> dict[str, str]:
    """Each cache folder an authn block uses, with where it is set (or the block, for the default)."""
    folders: dict[str, str] = {}
    for block in _auth_blocks(config):
        opts = {key: (d, value) for d, key, value in _options(_effective(config, block))}
        if ACTIVATE_AUTHN not in opts:
            continue
        ttl = opts.get("authn.cache.ttl")
        if ttl is not None and ttl[1].strip() == "0":
            continue
        given = opts.get("authn.cache.dir")
        if given is None:
            folders.setdefault(Settings().cache.dir, f"{block[-1].file}:{block[-1].line}")
        elif os.path.isabs(given[1]):
            folders.setdefault(given[1], given[0].where)
    return folders


def _check_cache_folders(config: Config, findings: Findings) -> None:
    user = _run_user(config)
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return  # reported by the file checks when a file is configured
    try:
        group = grp.getgrgid(entry.pw_gid).gr_name
    except KeyError:
        group = user
    create = f"install -d -o {user} -g {group} -m 0700"
    slower = (
        "so each Apache process keeps a small cache of its own and checks each password hash in full once"
    )
    for folder, where in _cache_folders(config).items():
        root = _document_root_over(config, folder)
        if root is not None:
            findings.add(
                where,
                f"the credential cache folder {folder} is under the DocumentRoot {root}",
                "set authn.cache.dir outside every DocumentRoot (default /var/cache/authn)",
            )
        try:
            st = os.lstat(folder)
        except OSError as exc:
            problem = "does not exist" if isinstance(exc, FileNotFoundError) else exc.strerror
            findings.add(
                where, f"the credential cache folder {folder} {problem}, {slower}", f"{create} {folder}"
            )
            continue
        if not stat.S_ISDIR(st.st_mode):
            findings.add(
                where,
                f"the credential cache folder {folder} is not a folder (a symlink?), {slower}",
                f"rm {folder} && {create} {folder}",
            )
        elif st.st_uid != entry.pw_uid:
            findings.add(
                where,
                f"the credential cache folder {folder} belongs to uid {st.st_uid}, not to the Apache "
                f"user {user}, {slower}",
                f"chown {user}:{group} {folder} && chmod 0700 {folder}",
            )
        else:
            _check_cache_files(folder, entry.pw_uid, user, group, where, slower, findings)


def _check_cache_files(
    folder: str, uid: int, user: str, group: str, where: str, slower: str, findings: Findings
) -> None:
    """Files in the cache folder that the Apache user does not own (made by root running a
    test, a restore...): Apache refuses them, so the machine-wide cache is off."""
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return
    for name in names:
        path = os.path.join(folder, name)
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if st.st_uid != uid:
            findings.add(
                where,
                f"the credential cache file {path} belongs to uid {st.st_uid}, not to the Apache user "
                f"{user}: Apache refuses it, {slower}",
                f"chown {user}:{group} {path} (or delete it: authn makes it again)",
            )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="authn check",
        description="Check an Apache configuration for the mistakes that switch protection "
        "off or break it. Prints FILE:LINE: problem; fix: ... for each; exit 1 if any.",
        epilog="examples:\n  authn check /etc/apache2            (Debian's config folder)\n"
        "  authn check /etc/httpd/conf/httpd.conf",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "config",
        nargs="?",
        default="/etc/apache2",
        help="main config file, or a server's config folder (default: /etc/apache2)",
    )
    args = parser.parse_args(argv)
    config = read_config(args.config)
    if not config.directives:
        for problem in config.problems:
            print(f"authn check: {problem}")
        print(f"authn check: nothing to check in {args.config}")
        return 2
    lines = _check_main_or_fragment(args.config, config)
    for line in lines:
        print(line)
    problems = [line for line in lines if f": {WARNING}" not in line]
    if problems:
        print(f"authn check: {len(problems)} problem(s) found")
        return 1
    print(f"authn check: {args.config}: no problem found")
    return 0


def _main_config_of(path: str) -> str | None:
    """The main config file (apache2.conf, httpd.conf) in a folder above ``path``."""
    folder = os.path.dirname(os.path.realpath(path))
    while True:
        for name in ("apache2.conf", "httpd.conf"):
            candidate = os.path.join(folder, name)
            if os.path.isfile(candidate) and candidate != os.path.realpath(path):
                return candidate
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def _check_main_or_fragment(path: str, config: Config) -> list[str]:
    """A main config is checked as it is. A file without LoadModule lines (a vhost) is
    checked with the server-level lines of the main config above it (Debian:
    /etc/apache2/apache2.conf), reporting its own lines only; with no main config found,
    the server-level checks are skipped."""
    if os.path.isdir(path) or any(d.name == "loadmodule" for d in config.directives):
        return check(config)
    main_path = _main_config_of(path)
    if main_path is None:
        return check(config, fragment=True)
    own = {os.path.realpath(d.file) for d in config.directives}
    server = read_config(main_path)
    top = [
        d
        for d in server.directives
        if all(sec.name in CONDITIONALS for sec in d.sections) and os.path.realpath(d.file) not in own
    ]
    merged = Config([*top, *config.directives], config.problems, server.server_root, server.defines)
    mine = {d.file for d in config.directives}
    return [line for line in check(merged) if line.split(":", 1)[0] in mine]
