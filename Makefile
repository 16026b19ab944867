# The README's commands. Each one installs what it needs on a fresh Debian 12 (as root).
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip -q --disable-pip-version-check

.PHONY: demo test lint bench bench-quick system-deps venv install

demo: system-deps install        ## Apache on 127.0.0.1:8080 protecting static and PHP content
	$(PY) -m devkit.demo

test: system-deps install        ## the whole test suite, against a real Apache, slapd and htpasswd
	$(PY) -m pytest

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: system-deps install       ## the benchmark against Apache's native modules (about 15 min)
	$(PIP) install 'matplotlib>=3.6'
	$(PY) -m bench

bench-quick: system-deps install ## the same, short runs (about 3 min)
	$(PIP) install 'matplotlib>=3.6'
	$(PY) -m bench --quick

system-deps:
	scripts/system-deps.sh

# The venv must come from /usr/bin/python3, the interpreter mod_python embeds, whatever
# python3 is first on PATH (pyenv, conda): a clean environment makes sure of it.
venv: $(VENV)/.deps-installed
$(VENV)/.deps-installed: pyproject.toml
	env -i PATH=/usr/bin:/bin /usr/bin/python3 -m venv $(VENV)
	$(PIP) install --upgrade pip setuptools wheel
	$(PIP) install '.[dev,ldap]'
	touch $@

# Apache imports authn from the venv's site-packages, where .pth-based editable installs are
# not seen: install a real copy (fast, no dependencies) every time.
install: venv
	$(PIP) install --no-deps --no-build-isolation .
