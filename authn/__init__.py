"""authn: authentication and authorization for Apache httpd 2.4, run inside Apache by mod_python.

Only :mod:`authn.handlers` imports ``mod_python``; everything else is plain Python that can be
imported and tested without Apache.

Glossary (the words used everywhere in this package)
----------------------------------------------------
option
    A ``PythonOption`` key/value pair from the Apache configuration. Our keys start with
    ``authn.``; :mod:`authn.settings` holds the table of keys, defaults and validators.
settings
    One frozen :class:`authn.settings.Settings` per distinct option set, built once and cached.
source
    A credential source: something that answers "is this user's password right?".
    ``file`` is an htpasswd-format password file (:mod:`authn.sources.passwordfile`).
verdict
    A source's answer, a plain value (:class:`authn.verdict.Verdict`): the user is *unknown*,
    *denied* (wrong password, disabled) or *granted*, with the groups and attributes found.
    A source raises :class:`authn.verdict.SourceUnavailable` for infrastructure faults
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
    The verified-credential cache (:mod:`authn.cache`): granted verdicts under an HMAC of
    (chain, user, password), a small per-process layer in front of the machine-wide
    *shared store* (:mod:`authn.sharedcache`, one file read with ``pread`` by every child).
lockout
    Counting failed checks per (user, client address) and per client address, and refusing
    with 429 past a threshold (:mod:`authn.lockout`); the *store* holds the counters
    (:mod:`authn.lockoutstore`: SQLite or Redis).
clean record
    A process's memory that an (address, user) had no counter when it last read the store;
    trusted while the address's *failure mark* (a shared slot that changes with every failure
    of that address) is unchanged, so a good user's request reads no store.
"""

__version__ = "0.1.0"
