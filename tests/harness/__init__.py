"""Real servers for tests, the demo and the benchmark: Apache httpd (and later slapd)."""
