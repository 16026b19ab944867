"""The ``authn`` admin command (see :mod:`authn.cli.main`)."""
