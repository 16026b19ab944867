"""authn: authentication and authorization for Apache httpd 2.4, run inside Apache by mod_python.

Only :mod:`authn.handlers` imports ``mod_python``; everything else is plain Python that can be
imported and tested without Apache. A request flows top to bottom through one core module,
:mod:`authn.gate`: the adapter reads ``req`` into plain values, the location's *gate* returns
one *answer*, and the adapter maps it to an Apache status.

Glossary (the words used everywhere in this package)
----------------------------------------------------
gate
    The request policy of one location (:class:`authn.gate.Gate`): the order of the steps
    (nothing to check, cache, reserve-check-settle, group rule) and what each one answers.
answer
    What the gate returns for one request, a plain value: ``Granted`` (200 from the
    content), ``Refused`` (401), ``Throttled`` (429) or ``Unavailable`` (5xx).
reason
    Why a request was refused, from a closed list (:class:`authn.verdict.Reason`): the word
    of the denial line and of the fail2ban filter. ``COUNTED`` are the ones the lockout counts.
option
    A ``PythonOption`` key/value pair from the Apache configuration. Our keys start with
    ``authn.``; :mod:`authn.settings` holds the table of keys, defaults and validators.
settings
    One frozen :class:`authn.settings.Settings` per distinct option set, built once and cached,
    in typed parts (``settings.ldap``, ``settings.lockout``, ``settings.cache``).
source
    A credential source: something that answers "is this user's password right?".
    ``file`` is an htpasswd-format password file (:mod:`authn.sources.passwordfile`).
verdict
    A source's answer, a plain value (:class:`authn.verdict.Verdict`): the user is *unknown*,
    *denied* (wrong password, disabled) or *granted*, with the groups and attributes found.
    A source raises :class:`authn.errors.SourceUnavailable` for infrastructure faults
    (file unreadable, directory down); it never turns a fault into a denial.
hash
    A stored password hash as it stands in a password file (``$2y$05$...``, ``$apr1$...``);
    ``scheme`` is its family (``bcrypt``, ``apr1``, ``sha512-crypt``...), see
    :mod:`authn.hashes`.
password
    Always ``bytes`` inside the package: exactly the bytes the client sent, never re-encoded.
user
    A user name as ``str``. Names from the network are decoded as Latin-1, which maps every
    byte to one code point, so no name is lost and comparison is byte-exact.
group rule
    ``authn.require.group``: the user must be in at least one of the named groups.
generation
    A value that changes whenever a source's data changes (for the password file: its device,
    inode, size, modification and change time). Caches drop entries whose generation is stale.
cache
    The verified-credential cache (:mod:`authn.cache.verdicts`): granted verdicts under a keyed
    BLAKE2b of (chain, user, password), a small per-process layer in front of the machine-wide
    *shared store* (:mod:`authn.cache.shared`, one file read with ``pread`` by every child).
account
    What the lockout counts a check under: the login for a password file; for a directory,
    the DN of the entry the search found (every spelling of the login that finds it is one
    account), or the login folded as the directory folds strings when nothing was found.
lockout
    Counting failed checks per (account, client address) and per client address, and refusing
    with 429 past a threshold (:mod:`authn.lockout.policy`); the *store* holds the counters
    (:mod:`authn.lockout.stores`: SQLite or Redis).
reservation
    A failure counted *before* a check, atomically and only while below the thresholds, then
    *settled*: kept for a wrong password, given back for a right one or a fault. It is why
    concurrent guesses cannot outrun the threshold.
clean record
    A process's memory that an (address, user) had no counter when it last read the store;
    trusted while the address's *failure mark* (a shared slot that changes with every failure
    of that address) is unchanged, so a good user's request reads no store.
"""

__version__ = "0.2.0"  #: the one place the version is written (pyproject reads it)
