"""Fixtures for the cloud-lb tests; the helpers live in lb_env.py (a unique module name:
several test folders have a conftest, so `from lb_env import` would pick the wrong one)."""
from lb_env import env, small_pool_env  # noqa: F401  (fixtures)
