"""`faerec-study config`: the fully resolved configuration of one cell, without running it.

Every key is printed as YAML; a key that a layer set carries a ``# source`` comment (the cell's
options, the dataset's declared ``preset_as``, the preset, ``--set``), so a surprising value can
be traced before hours of training are spent on it. The output reads back with
``yaml.safe_load`` into the same dictionary that ``train`` stores as the run's configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from faerec.config import (
    BACKBONES,
    BUNDLED_DATASETS,
    METHODS,
    PRESET_HELP,
    PRESETS,
    RunConfig,
    parse_set_arguments,
    preset_notice,
    resolve_with_sources,
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "config",
        help="print the resolved configuration of one cell, with the source of each setting",
        description=(
            "Resolve (dataset, backbone, method) exactly as `train` and a study do -- defaults, "
            "the dataset's preset_as, the preset, then --set -- and print every key as YAML, "
            "with a '# source' comment on each key that a layer set. Nothing is trained."
        ),
    )
    parser.add_argument(
        "--dataset",
        required=True,
        help=f"bundled dataset ({', '.join(BUNDLED_DATASETS)}) or a dataset folder",
    )
    parser.add_argument("--backbone", choices=BACKBONES, default="sasrec", help="(default sasrec)")
    parser.add_argument(
        "--method", choices=list(METHODS), default="backbone", help="(default backbone)"
    )
    parser.add_argument("--preset", choices=PRESETS, default="official", help=PRESET_HELP)
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one configuration key (repeatable), e.g. --set data.preset_as=food",
    )
    parser.set_defaults(handler=run_config)


def run_config(args: argparse.Namespace) -> int:
    from faerec.commands.train import _check_dataset

    _check_dataset(args.dataset)
    overrides = parse_set_arguments(args.overrides)
    config, sources = resolve_with_sources(
        args.dataset, args.backbone, args.method, args.preset, overrides
    )
    write_config_yaml(config, sources, args.preset, sys.stdout)
    return 0


def write_config_yaml(
    config: RunConfig, sources: dict[str, str], preset: str, stream: TextIO
) -> None:
    """Every key of ``config`` as YAML, with ``# source`` on the keys a layer set.

    Values are written as JSON, which YAML reads as the same scalars and lists.
    """
    print(
        f"# dataset {config.data.dataset}, backbone {config.model.backbone}, "
        f"method {config.method}, preset {preset}",
        file=stream,
    )
    notice = preset_notice(config, preset)
    if notice:
        print(f"# {notice}", file=stream)
    for name, value in config.to_dict().items():
        if isinstance(value, dict):
            print(f"{name}:", file=stream)
            for key, inner in value.items():
                print(_line(f"  {key}", inner, sources.get(f"{name}.{key}")), file=stream)
        else:
            print(_line(name, value, sources.get(name)), file=stream)


def _line(key: str, value: Any, source: str | None) -> str:
    text = f"{key}: {json.dumps(value, ensure_ascii=False)}"
    return f"{text}  # {source}" if source else text
