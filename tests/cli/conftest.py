"""Fixtures for the CLI tests; the helpers live in cli_env.py (a unique module name:
several test folders have a conftest, so `from cli_env import` would pick the wrong one)."""
from cli_env import cli_cluster, ns  # noqa: F401  (fixtures)
