"""Password guessing: the lockout policy (:mod:`authn.lockout.policy.policy`) and the stores its
counters live in (:mod:`authn.lockout.policy.stores`: SQLite on one machine, Redis across machines).
"""
