"""`faerec-study config`: the fully resolved configuration of one cell, without running it.

Every key is printed as YAML; a key that a layer set carries a ``# source`` comment (the cell's
options, the dataset's declared ``preset_as``, the preset, a study spec, ``--set``), so a
surprising value can be traced before hours of training are spent on it. With ``--spec`` the
cells are a study's, resolved as the study resolves them (its preset and ``fixed`` keys). The
output reads back with ``yaml.safe_load`` into the same dictionary that ``train`` stores as the
run's configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from faerec.commands.train import add_cell_arguments
from faerec.config import (
    RunConfig,
    config_notices,
    parse_set_arguments,
    resolve_with_sources,
)
from faerec.errors import ConfigError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "config",
        help="print the resolved configuration of one cell, with the source of each setting",
        description=(
            "Resolve (dataset, backbone, method) exactly as `train` and a study do -- defaults, "
            "the dataset's preset_as, the preset, a study's fixed keys, then --set -- and print "
            "every key as YAML, with a '# source' comment on each key that a layer set. "
            "Nothing is trained."
        ),
    )
    add_cell_arguments(parser, dataset_required=False, set_example="data.preset_as=food")
    parser.add_argument(
        "--spec",
        metavar="FILE",
        help="a study YAML: print its cells (one YAML document each) instead of --dataset/"
        "--backbone/--method/--preset",
    )
    parser.add_argument("--cell", metavar="ID", help="with --spec: only this cell")
    parser.set_defaults(handler=run_config)


def run_config(args: argparse.Namespace) -> int:
    from faerec.commands.train import _check_dataset

    overrides = parse_set_arguments(args.overrides)
    if args.spec is not None:
        return _print_spec_cells(args.spec, args.cell, overrides)
    if args.cell is not None:
        raise ConfigError("--cell: only with --spec")
    if args.dataset is None:
        raise ConfigError("--dataset: required (or --spec FILE)")
    _check_dataset(args.dataset)
    config, sources = resolve_with_sources(
        args.dataset, args.backbone, args.method, args.preset, overrides
    )
    write_config_yaml(config, sources, args.preset, sys.stdout)
    return 0


def _print_spec_cells(path: str, cell_id: str | None, overrides: dict[str, Any]) -> int:
    """Each cell of a study as the study resolves its preset trial, then ``--set``."""
    from faerec.study.spec import parse_spec

    spec = parse_spec(path)
    cells = spec.cells()
    if cell_id is not None:
        cells = [cell for cell in cells if cell.cell_id == cell_id]
        if not cells:
            known = ", ".join(cell.cell_id for cell in spec.cells())
            raise ConfigError(f"--cell: no cell {cell_id!r} in {path} (cells: {known})")
    spec_overrides = spec.overrides()
    for index, cell in enumerate(cells):
        config, sources = resolve_with_sources(
            cell.dataset,
            cell.backbone,
            cell.method,
            spec.preset,
            {**spec_overrides, **overrides},
            override_source="--set",
        )
        for key in spec_overrides.keys() - overrides.keys():
            sources[key] = "spec fixed" if key in spec.fixed else "spec search.metric"
        if index:
            print("---")
        print(f"# cell {cell.cell_id} of {path}")
        write_config_yaml(config, sources, spec.preset, sys.stdout)
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
    for notice in config_notices(config, preset):
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
