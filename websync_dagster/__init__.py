"""websync-dagster: crawled web content from a dev PostgreSQL to a prod PostgreSQL, as a Dagster code location."""

#: the package's version (pyproject.toml reads it from here): ``websync --version`` prints it without
#: importing ``importlib.metadata``, which costs the CLI's start-up about 40 ms
__version__ = "0.1.0"
