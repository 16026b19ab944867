"""The verified-credential cache: granted verdicts under keyed hashes (:mod:`authn.cache.verdicts`),
a per-process layer in front of a machine-wide shared file (:mod:`authn.cache.shared`).
"""
