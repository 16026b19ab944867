"""python-ldap is optional (the ``ldap`` extra): a password-file install works without it,
and an LDAP location without it answers one line that names the fix."""

import subprocess
import sys

from authn.authenticator import LDAP_MISSING


def _run(code: str) -> subprocess.CompletedProcess[str]:
    prelude = "import sys; sys.modules['ldap'] = None\n"  # any import of python-ldap now fails
    return subprocess.run(
        [sys.executable, "-W", "error", "-c", prelude + code], capture_output=True, text=True
    )


def test_file_source_needs_no_python_ldap() -> None:
    code = (
        "from authn.authenticator import Authenticator\n"
        "from authn.settings import settings_for\n"
        "import authn.status, authn.gate\n"
        "s = settings_for({'authn.source': 'file', 'authn.file': '/nonexistent/users',\n"
        "                  'authn.cache.ttl': '0'})\n"
        "Authenticator(s)\n"
        "assert 'ldap' not in [k for k, v in sys.modules.items() if v is not None]\n"
    )
    result = _run(code)
    assert result.returncode == 0, result.stderr


def test_ldap_source_without_python_ldap_names_the_fix() -> None:
    code = (
        "from authn.authenticator import Authenticator\n"
        "from authn.errors import ConfigError\n"
        "from authn.settings import settings_for\n"
        "s = settings_for({'authn.source': 'ldap', 'authn.ldap.url': 'ldap://127.0.0.1/dc=x?uid',\n"
        "                  'authn.cache.ttl': '0'})\n"
        "try:\n"
        "    Authenticator(s)\n"
        "except ConfigError as exc:\n"
        "    print(exc)\n"
    )
    result = _run(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"authn.source: {LDAP_MISSING}\n"
