"""The core must import and work with no mod_python anywhere (STYLE.md #1)."""

import subprocess
import sys

CORE = [
    "authn", "authn.verdict", "authn.settings", "authn.hashes", "authn.httpd.words",
    "authn.watchedfile", "authn.authenticator", "authn.sources.passwordfile",
    "authn.sources.groupfile", "authn.httpd.logtext", "authn.gate",
]  # fmt: skip


def test_core_imports_without_mod_python() -> None:
    code = (
        "import sys; sys.modules['mod_python'] = None\n"  # any import of it now fails
        f"import importlib\nfor m in {CORE!r}: importlib.import_module(m)\n"
        "assert 'mod_python' not in [k for k, v in sys.modules.items() if v is not None]\n"
    )
    subprocess.run([sys.executable, "-W", "error", "-c", code], check=True)


def test_handlers_need_mod_python() -> None:
    code = "import sys; sys.modules['mod_python'] = None\nimport authn.handlers\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode != 0 and "mod_python" in result.stderr


def test_settings_import_no_policy_module() -> None:
    """The settings are a leaf: reading options loads no lockout, cache or source module."""
    code = (
        "import sys; import authn.settings\n"
        "loaded = [m for m in sys.modules if m.startswith(('authn.lockout', 'authn.cache', 'authn.gate'))]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
