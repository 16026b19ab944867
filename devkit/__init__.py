"""The development kit: throwaway real servers and the one HTTP client, used by the tests,
the benchmark and the demo (never by the product).

* :mod:`devkit.apache`: an Apache with mod_python (prefork or event) on a free port, from a
  generated config that ``Include``s the shipped snippets, started with a clean environment
  and stopped with everything it forked;
* :mod:`devkit.slapd`: an OpenLDAP slapd with TLS and the overlays the tests use;
* :mod:`devkit.redis`: a redis-server that can be stopped and started on the same port;
* :mod:`devkit.http`: raw-socket HTTP requests, any header bytes, any 127.x source address;
* :mod:`devkit.site`: a protected site (folder, password file, status page) and log helpers;
* :mod:`devkit.processes`: servers that die with their parent, and the cleanup of groups;
* :mod:`devkit.demo`: ``make demo``.
"""
