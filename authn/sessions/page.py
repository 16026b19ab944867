"""The sign-in page: plain HTML that works without JavaScript, labelled for screen readers.

An admin may replace it with ``authn.login.template``: an HTML file with ``$``-placeholders
(Python's :class:`string.Template`), every value already escaped for HTML:

``$realm``
    the protected area's name (its ``AuthName``);
``$message``
    what went wrong ("Wrong user name or password.", "Too many attempts...") or empty;
``$form_fields``
    the inputs the form must post (hidden CSRF token and return path, user name, password,
    and the code field when a second factor is configured): put them inside your own
    ``<form method="post" action="$action">`` with a submit button;
``$action``
    where the form posts.

A template that cannot be read answers 500 with one line naming the option and the path.
"""

from __future__ import annotations

import html
import string
from dataclasses import dataclass

from authn.errors import ConfigError

DEFAULT = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>Sign in: $realm</title>
<style>
body{font-family:system-ui,sans-serif;background:#f4f5f7;margin:0;display:flex;
  min-height:100vh;align-items:center;justify-content:center}
main{background:#fff;padding:2rem 2.5rem;border-radius:8px;box-shadow:0 1px 4px rgba(0,0,0,.15);width:20rem}
h1{font-size:1.3rem;margin:0 0 1.2rem}
label{display:block;margin:.8rem 0 .2rem;font-weight:600}
input[type=text],input[type=password]{width:100%;box-sizing:border-box;padding:.5rem;
  font-size:1rem;border:1px solid #888;border-radius:4px}
input:focus,button:focus{outline:3px solid #2962ff;outline-offset:1px}
button{margin-top:1.4rem;width:100%;padding:.6rem;font-size:1rem;background:#2962ff;
  color:#fff;border:0;border-radius:4px;cursor:pointer}
.message{background:#fdecea;color:#611a15;padding:.6rem;border-radius:4px;margin-bottom:.5rem}
</style>
</head>
<body>
<main>
<h1>Sign in to $realm</h1>
$message_block
<form method="post" action="$action">
$form_fields
<button type="submit">Sign in</button>
</form>
</main>
</body>
</html>
"""


@dataclass(frozen=True, slots=True)
class PageValues:
    realm: str
    action: str
    csrf: str
    return_to: str
    context: str
    user: str = ""
    message: str = ""
    ask_code: bool = False


def _fields(v: PageValues) -> str:
    e = html.escape
    parts = [
        f'<input type="hidden" name="csrf" value="{e(v.csrf)}">',
        f'<input type="hidden" name="return" value="{e(v.return_to)}">',
        f'<input type="hidden" name="context" value="{e(v.context)}">',
        '<label for="authn-user">User name</label>',
        f'<input type="text" id="authn-user" name="user" value="{e(v.user)}" autocomplete="username"'
        f' autocapitalize="none" spellcheck="false" required{"" if v.user else " autofocus"}>',
        '<label for="authn-password">Password</label>',
        '<input type="password" id="authn-password" name="password" autocomplete="current-password"'
        f" required{' autofocus' if v.user else ''}>",
    ]
    if v.ask_code:
        parts += [
            '<label for="authn-code">Code from your authenticator app</label>',
            '<input type="text" id="authn-code" name="code" inputmode="numeric"'
            ' autocomplete="one-time-code" pattern="[0-9 ]{6,7}|[a-z0-9]{5}-[a-z0-9]{5}"'
            ' aria-describedby="authn-code-help">',
            '<p id="authn-code-help">Six digits, or one of your recovery codes.</p>',
        ]
    return "\n".join(parts)


def render(values: PageValues, template_path: str | None = None) -> str:
    """The page's HTML (the admin's template when one is set; raises ConfigError when it
    cannot be read)."""
    text = DEFAULT
    if template_path is not None:
        try:
            with open(template_path, encoding="utf-8") as fh:
                text = fh.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                "authn.login.template",
                f"cannot read {template_path}: {getattr(exc, 'strerror', None) or exc}; the Apache "
                "user must be able to read it (or remove the option to use the shipped page)",
            ) from None
    message = html.escape(values.message)
    return string.Template(text).safe_substitute(
        realm=html.escape(values.realm),
        message=message,
        message_block=f'<p class="message" role="alert">{message}</p>' if message else "",
        form_fields=_fields(values),
        action=html.escape(values.action),
    )


def notice(title: str, text: str, link: str, link_text: str) -> str:
    """A small page: a heading, a sentence and a link (signed out, try again...)."""
    e = html.escape
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>'
        f'<meta name="robots" content="noindex"></head><body><main><h1>{e(title)}</h1>'
        f'<p>{e(text)}</p><p><a href="{e(link)}">{e(link_text)}</a></p></main></body></html>\n'
    )
