"""Run an `lrr` command in the test process, as the console script would, and keep what it printed.

A command costs its own work, not a fresh interpreter's imports. Tests of what only a process can
show (the installed script, signals, a terminal, a new process's environment) run `lrr` themselves.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from typing import NamedTuple

from lrr_service.clients.cli import main


class Done(NamedTuple):
    """What one `lrr` command left: its exit status and everything it printed."""

    returncode: int
    stdout: str
    stderr: str


@contextlib.contextmanager
def lrr_environment(url: str | None) -> Iterator[None]:
    """The environment without any LRR_ variable (and without a configuration file), LRR_URL set to `url`
    when given; restored after."""
    saved = dict(os.environ)
    for name in [name for name in os.environ if name.startswith("LRR_")]:
        del os.environ[name]
    os.environ["LRR_CONFIG"] = os.devnull + ".absent"  # no one's own ~/.config/lrr/config.toml
    if url:
        os.environ["LRR_URL"] = url
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def run_lrr(*args: str, url: str | None = None) -> Done:
    """`lrr args...` through `main(argv)`, with LRR_URL set to `url` when given and no other LRR_ variable."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with lrr_environment(url), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            code = main(list(args))
        except SystemExit as exit_:  # argparse: --help and usage errors
            code = exit_.code if isinstance(exit_.code, int) else 1
    return Done(code, stdout.getvalue(), stderr.getvalue())
