"""What every Redstone command does the same way: logging, errors, progress."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import TextIO

from redstone_agent.errors import RedstoneError


def setup_logging(prog: str, verbose: int) -> None:
    """Log to stderr, one line per event, prefixed with the command's name."""
    level = logging.DEBUG if verbose > 0 else logging.INFO
    logging.basicConfig(level=level, format=f"{prog}: %(message)s", stream=sys.stderr)


def run_main(prog: str, main: Callable[[], int]) -> int:
    """Run ``main``; a user error becomes one line on stderr and a non-zero exit."""
    try:
        return main()
    except RedstoneError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `redstone-master status | head`: the reader left; that is not an error of ours.
        # Point stdout at /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """``-v`` for debug logging."""
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more detail")


def new_parser(prog: str, description: str, epilog: str) -> argparse.ArgumentParser:
    """A parser whose help keeps the layout of its description and examples, with ``-v``."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_arguments(parser)
    return parser


class ProgressLine:
    """A single updating progress line on a TTY; silent otherwise (logs say the outcome)."""

    def __init__(self, label: str, stream: TextIO = sys.stderr, min_interval: float = 0.2) -> None:
        self.label = label
        self.stream = stream
        self.enabled = stream.isatty()
        self.min_interval = min_interval
        self.started = time.monotonic()
        self._last = 0.0

    def __call__(self, done: int, total: int | None) -> None:
        """Progress callback: bytes done and the total when known."""
        now = time.monotonic()
        if not self.enabled or (now - self._last < self.min_interval and done != total):
            return
        self._last = now
        rate = done / max(now - self.started, 1e-6) / 1e6
        if total:
            text = f"{self.label}: {100 * done / total:5.1f}% of {total / 2**20:.1f} MiB"
        else:
            text = f"{self.label}: {done / 2**20:.1f} MiB"
        self.stream.write(f"\r{text}, {rate:.1f} MB/s ")
        self.stream.flush()

    def close(self) -> None:
        """End the progress line so the next output starts on its own line."""
        if self.enabled and self._last:
            self.stream.write("\n")
            self.stream.flush()
