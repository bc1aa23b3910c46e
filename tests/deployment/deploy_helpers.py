"""Helpers for the deployment tests: a real uvicorn server on a free loopback port, run in a thread."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from testkit import free_port, running  # noqa: F401  (shared with the e2e tests)


@contextmanager
def lazy_servers(specs: dict[str, tuple[Any, dict]]) -> Iterator[Callable[[str], tuple[str, Any]]]:
    """``get(name) -> (base_url, run)`` for ``specs = {name: (run_dir, build_app options)}``: each server
    starts on first use and all stop on exit."""
    from palaestra.deployment.server import build_app
    from palaestra.runs import Run

    started: dict[str, tuple[str, Run]] = {}
    with ExitStack() as stack:
        def get(name: str) -> tuple[str, Run]:
            if name not in started:
                run_dir, options = specs[name]
                run = Run.load(run_dir)
                started[name] = (stack.enter_context(running(build_app(run, **options))), run)
            return started[name]

        yield get
