"""Helpers for the deployment tests: a real uvicorn server on a free loopback port, run in a thread."""

from __future__ import annotations

from testkit import free_port, running  # noqa: F401  (shared with the e2e tests)


