"""`lrr serve ...`: run the server by replacing this process with `python -m lrr_service.service serve ...`.

The service is never imported here (clients and service are independent); its own parser
handles every option, including --help, and is told (`--prog lrr`) to call itself `lrr serve`.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn


def register(subcommands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """List `serve` in `lrr --help`; main() hands `lrr serve ...` to exec_service before parsing."""
    subcommands.add_parser(
        "serve", add_help=False, help="run the server (same options as python -m lrr_service.service serve)"
    )


def exec_service(arguments: list[str]) -> NoReturn:
    """Replace this process with the service's own command line, whose usage and help then say `lrr serve`."""
    os.execv(sys.executable, [sys.executable, "-m", "lrr_service.service", "--prog", "lrr", "serve", *arguments])
