"""The `faerec-study` command: argument parsing, exit codes, one-line errors.

Each sub-command lives in ``faerec/commands/<name>.py`` and exposes ``register(subparsers)``,
which adds its parser and sets ``handler`` to a function ``(args) -> int`` (the exit code).
Business logic stays out of this file.

Exit codes: 0 success, 1 failure (e.g. every trial failed), 2 bad input (arguments, spec, data),
3 interrupted (re-run to resume).

``--data-dir`` is accepted before the command and after it (for the commands that read data);
it is exported as ``FAEREC_DATA_DIR`` so that Ray workers started by the same command find the
data too (:mod:`faerec.data.location` decides where data comes from).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from faerec import __version__
from faerec.data.location import DATA_DIR_ENV
from faerec.errors import ConfigError, FaerecError
from faerec.run_progress import say

COMMAND_MODULES = ("train", "config", "embed", "prepare", "study", "report")
#: Commands that read the bundled data, and so take ``--data-dir`` after their name as well.
DATA_COMMANDS = ("train", "embed", "validate", "run", "resume")
DATA_DIR_HELP = (
    f"the data/ folder of a faerec-study clone (default: ${DATA_DIR_ENV}, else the clone "
    "this runs from)"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="faerec-study",
        description="Declarative hyper-parameter studies for FAERec on sequential recommenders.",
    )
    parser.add_argument("--version", action="version", version=f"faerec-study {__version__}")
    parser.add_argument("--data-dir", metavar="DIR", help=DATA_DIR_HELP)
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
    for name in DATA_COMMANDS:
        if name in subparsers.choices:
            # SUPPRESS: an absent sub-command option must not overwrite the global one
            subparsers.choices[name].add_argument(
                "--data-dir", metavar="DIR", default=argparse.SUPPRESS, help=DATA_DIR_HELP
            )
    return parser


def use_data_dir(value: str | None) -> None:
    """Export ``--data-dir`` for this process and every process it starts."""
    if value is None:
        return
    folder = Path(value).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"--data-dir {value}: not a folder")
    os.environ[DATA_DIR_ENV] = str(folder.resolve())


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        use_data_dir(args.data_dir)
        return int(args.handler(args))
    except FaerecError as error:
        print(f"faerec-study: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        say("faerec-study: interrupted")
        return 3
    except BrokenPipeError:
        # output piped into e.g. `head`, which closed early: not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
