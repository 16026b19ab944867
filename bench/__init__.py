"""The benchmark of authn against Apache's own authentication modules (see the README, "Benchmark")."""
