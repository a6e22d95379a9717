"""The demo kit: embedded PostgreSQL and sshd launchers, the sample schema and data, the demo runner.

The runtime (cli, defs, engine, transport, core) never imports it; tests and benchmarks do.
"""
