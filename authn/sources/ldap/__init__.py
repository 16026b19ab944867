"""The ``ldap`` source: the directory (:mod:`~authn.sources.ldap.directory`), its warm
connections (:mod:`~authn.sources.ldap.pool`), filters, DNs and Active Directory rules
(:mod:`~authn.sources.ldap.filters`) and AuthLDAPURL parsing (:mod:`~authn.sources.ldap.url`).
"""
