"""Sign-in from a browser: sessions, the sign-in page, the second factor.

A location with ``authn.login form`` sends a browser without a valid session to the sign-in
page (``<authn.login.url>/login``); a right password there (and a right TOTP code, for a
user enrolled in ``authn.otp.file``) starts a *session*: a random token in a cookie, and a
record in the session store (:mod:`authn.sessions.store`) found again by the token's hash.
The request policy for both is in :mod:`authn.gate` (``Gate.sign_in``, ``Gate.resume``):
the same sources, cache, lockout and group rules as Basic.

* :mod:`authn.sessions.sessions`: starting, finding (with idle and absolute timeouts and the
  credential fingerprint) and ending sessions;
* :mod:`authn.sessions.web`: the HTTP rules, pure functions: local return paths only,
  cookies, which clients are browsers, the CSRF token of the form;
* :mod:`authn.sessions.page`: the sign-in page (a template an admin may replace);
* :mod:`authn.sessions.otp`: the TOTP secrets file and code checks (RFC 6238).
"""
