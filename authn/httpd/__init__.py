"""Apache httpd's own rules, reproduced: the Basic header, configuration words and
lines, the configuration tree, log quoting. Each module names the Apache function it copies.
"""
