# The README's commands. Each one installs what it needs on a fresh Debian 12 (as root).
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip -q --disable-pip-version-check

.PHONY: demo test lint bench bench-quick system-deps venv install deb apache-can-read

demo: apache-can-read system-deps install        ## Apache on 127.0.0.1:8080 protecting static and PHP content
	$(PY) -m devkit.demo

test: apache-can-read system-deps install        ## the whole test suite, against a real Apache, slapd and htpasswd
	$(PY) -m pytest

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench: system-deps install       ## the benchmark against Apache's native modules (about 25 min)
	$(PIP) install 'matplotlib>=3.6'
	$(PY) -m bench

bench-quick: system-deps install ## the same, short runs (about 5 min)
	$(PIP) install 'matplotlib>=3.6'
	$(PY) -m bench --quick

system-deps:
	scripts/system-deps.sh

# As root, the tests' and the demo's Apache children run as www-data and import authn from
# this checkout's venv: stop at once, saying what to do, if they cannot reach it.
apache-can-read:
	scripts/apache-can-read.sh $(CURDIR)/Makefile

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

# The Debian package, built by Debian's tooling (debhelper, dh-python/pybuild) from a copy of
# the tracked and new files, so the checkout stays clean: authn_<version>_all.deb here. A clean
# environment: Debian's python3 builds it, whatever python3 is first on PATH (pyenv, a venv).
VERSION := $(shell sed -n 's/^__version__ = "\([^"]*\)".*/\1/p' authn/__init__.py)
DEB     := authn_$(VERSION)_all.deb
deb:
	scripts/system-deps.sh --deb
	@test "$$(dpkg-parsechangelog -S Version)" = "$(VERSION)" || { echo "make deb: debian/changelog is not at version $(VERSION) (authn/__init__.py): add an entry (dch -v $(VERSION))" >&2; exit 1; }
	rm -rf .deb-build && mkdir -p .deb-build/authn-$(VERSION)
	git ls-files -z --cached --others --exclude-standard | xargs -0 tar -cf - | tar -xf - -C .deb-build/authn-$(VERSION)
	cd .deb-build/authn-$(VERSION) && env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 HOME="$$HOME" dpkg-buildpackage -b -us -uc --no-sign >../build.log 2>&1 || { tail -40 ../build.log; exit 1; }
	mv .deb-build/$(DEB) .
	rm -rf .deb-build
	@echo "built $(DEB)"
