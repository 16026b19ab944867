"""Reading an Apache configuration into a flat list of directives, for ``authn check``.

Enough of Apache's own reading to find mistakes, not to run a server: comments, ``\\``
line continuations, quoted arguments (split like ``ap_getword_conf``), ``Define`` and
``${VAR}`` (also from Debian's ``envvars``), ``Include``/``IncludeOptional`` with globs
relative to ``ServerRoot``, and sections (``<Location /x>`` ... ``</Location>``). Every
directive keeps its file, line and the sections around it. Conditional sections
(``<IfModule>``, ``<IfDefine>``) are read as if they were true.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass, field

from authn.httpd.words import split_words

_VAR = re.compile(r"\$\{([A-Za-z0-9_]+)\}")


@dataclass(frozen=True, slots=True)
class Section:
    name: str  #: lower case, without "<"
    args: tuple[str, ...]
    file: str
    line: int

    def __str__(self) -> str:
        return f"<{self.name} {' '.join(self.args)}>".replace(" >", ">")


@dataclass(frozen=True, slots=True)
class Directive:
    name: str  #: lower case
    args: tuple[str, ...]
    file: str
    line: int
    sections: tuple[Section, ...]  #: outermost first; empty at server level

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass
class Config:
    directives: list[Directive] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  #: what could not be read
    server_root: str = ""
    defines: dict[str, str] = field(default_factory=dict)


def _envvars(server_root: str) -> dict[str, str]:
    """The ``export NAME=value`` lines of Debian's envvars file, if there is one."""
    values: dict[str, str] = {}
    path = os.path.join(server_root, "envvars")
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                m = re.match(r"\s*export\s+([A-Za-z0-9_]+)=(.*)", line)
                if m:
                    value = m.group(2).strip().strip("'\"")
                    if "$" not in value:
                        values[m.group(1)] = value
    except OSError:
        pass
    return values


def read_config(path: str) -> Config:
    """Read ``path`` (a file, or a folder holding apache2.conf or httpd.conf)."""
    if os.path.isdir(path):
        folder = path
        for name in ("apache2.conf", "httpd.conf", "conf/httpd.conf"):
            if os.path.isfile(os.path.join(folder, name)):
                path = os.path.join(folder, name)
                break
        else:
            config = Config()
            config.problems.append(f"{folder}: no apache2.conf or httpd.conf in this folder")
            return config
        root = folder
    else:
        root = os.path.dirname(os.path.abspath(path))
    config = Config(server_root=root)
    config.defines = {**_envvars(root), **{k: v for k, v in os.environ.items() if k == "HOME"}}
    _read_file(config, os.path.abspath(path), [], set())
    return config


def _substitute(config: Config, text: str) -> str:
    return _VAR.sub(lambda m: config.defines.get(m.group(1), m.group(0)), text)


def _logical_lines(text: str) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip("\r")
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1]
            continue
        out.append((start, pending + line))
        pending = ""
    if pending:
        out.append((start, pending))
    return out


def _read_file(config: Config, path: str, stack: list[Section], seen: set[str]) -> None:
    if path in seen:
        config.problems.append(f"{path}: included again from itself; skipped")
        return
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
    except OSError as exc:
        config.problems.append(f"{path}: cannot read: {exc.strerror}")
        return
    seen = seen | {path}
    depth = len(stack)
    for number, raw in _logical_lines(text):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("</"):
            name = line[2:].rstrip(">").strip().lower()
            if len(stack) > depth and stack[-1].name == name:
                stack.pop()
            else:
                config.problems.append(f"{path}:{number}: unexpected </{name}>")
            continue
        if line.startswith("<"):
            words = split_words(_substitute(config, line[1:].rstrip().rstrip(">")))
            if words:
                stack.append(Section(words[0].lower(), tuple(words[1:]), path, number))
            continue
        words = split_words(_substitute(config, line))
        if not words:
            continue
        name, args = words[0].lower(), tuple(words[1:])
        config.directives.append(Directive(name, args, path, number, tuple(stack)))
        if name == "define" and args:
            config.defines[args[0]] = args[1] if len(args) > 1 else ""
        elif name == "serverroot" and args:
            config.server_root = args[0]
        elif name in ("include", "includeoptional") and args:
            _include(config, args[0], name == "includeoptional", path, number, stack, seen)
    while len(stack) > depth:
        section = stack.pop()
        config.problems.append(f"{section.file}:{section.line}: {section} is never closed")


def _include(
    config: Config,
    pattern: str,
    optional: bool,
    path: str,
    number: int,
    stack: list[Section],
    seen: set[str],
) -> None:
    if not os.path.isabs(pattern):
        pattern = os.path.join(config.server_root, pattern)
    if os.path.isdir(pattern):
        pattern = os.path.join(pattern, "*")
    matches = sorted(glob.glob(pattern))
    if not matches and not optional and not glob.has_magic(pattern):
        config.problems.append(f"{path}:{number}: Include {pattern}: no such file")
    for match in matches:
        if os.path.isfile(match):
            _read_file(config, os.path.abspath(match), stack, seen)
