"""The `faerec-study` command: argument parsing, exit codes, one-line errors.

Each sub-command lives in ``faerec/commands/<name>.py`` and exposes ``register(subparsers)``,
which adds its parser and sets ``handler`` to a function ``(args) -> int`` (the exit code).
Business logic stays out of this file.

Exit codes: 0 success, 1 failure (e.g. every trial failed), 2 bad input (arguments, spec, data),
3 interrupted (re-run to resume).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from faerec.errors import FaerecError

COMMAND_MODULES = ("train", "config", "embed", "prepare", "study", "report")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="faerec-study",
        description="Declarative hyper-parameter studies for FAERec on sequential recommenders.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"faerec.commands.{name}")
        except ModuleNotFoundError as error:  # a command module not written yet
            if error.name != f"faerec.commands.{name}":
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except FaerecError as error:
        print(f"faerec-study: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("faerec-study: interrupted", file=sys.stderr)
        return 3
    except BrokenPipeError:
        # output piped into e.g. `head`, which closed early: not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
