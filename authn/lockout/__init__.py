"""Password guessing: the lockout policy (:mod:`authn.lockout.policy`) and the stores its
counters live in (:mod:`authn.lockout.stores`: SQLite on one machine, Redis across machines).
"""
