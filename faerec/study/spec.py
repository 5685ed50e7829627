"""A study file: parse, check and resolve it into a typed :class:`StudySpec`.

Every problem is collected, not just the first, and each one names the YAML line it comes from
(``FILE:LINE: key: what was expected``): the loader below records the line of every mapping key
and list item. Nothing here writes a file or starts a service, so ``faerec-study validate`` is
safe to run anywhere, and the same checks guard ``run`` before any work starts.

The resolved spec (bundled dataset names or absolute paths, coerced values, every default
filled in) is what ``study.json`` stores; :func:`spec_from_dict` reads it back for ``resume``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_origin

import yaml

from faerec import config as runconf
from faerec.budget import grace_problem, selection_problem
from faerec.errors import ConfigError
from faerec.report import DEFAULT_FORMATS as DEFAULT_REPORT_FORMATS
from faerec.report import FORMATS as REPORT_FORMATS
from faerec.study.space import KINDS, Param, SearchSpace
from faerec.text import did_you_mean

SAMPLERS = ("tpe", "random", "cmaes", "grid")
SCHEDULERS = ("asha", "median", "none")
DIRECTIONS = ("maximize", "minimize")
TOP_LEVEL_KEYS = (
    "name",
    "description",
    "datasets",
    "backbones",
    "methods",
    "preset",
    "fixed",
    "search",
    "scheduler",
    "resources",
    "final",
    "report",
    "storage",
)
SEARCH_KEYS = ("metric", "direction", "trials", "sampler", "seed", "space")
SCHEDULER_KEYS = {
    "asha": ("type", "grace_epochs", "reduction_factor"),
    "median": ("type", "grace_epochs", "min_samples"),
    "none": ("type",),
}
RESOURCE_KEYS = ("cpus_per_trial", "gpus_per_trial", "max_concurrent", "max_failures")
#: keys whose change would mix incompatible results in one study (resume refuses them)
IDENTITY_KEYS = (
    "datasets",
    "backbones",
    "methods",
    "preset",
    "fixed",
    "search.space",
    "search.metric",
    "search.direction",
    "scheduler",
    "storage",
)
#: set by the cell itself
CELL_KEYS = ("method", "data.dataset", "model.backbone")
#: the training budget and where a run executes: fixed per study, never searched
NOT_SEARCHABLE = (
    "train.max_epochs",
    "train.eval_start_epoch",
    "train.select_metric",
    "train.seed",
    "train.device",
    "train.num_threads",
)
DEFAULT_TRIALS = 20
DEFAULT_FINAL_SEEDS = 5
DEFAULT_METRIC = "valid.ndcg@20"

_NAME = re.compile(r"[A-Za-z0-9._-]+")
_METRIC = re.compile(
    r"valid\.(?:(?P<group>[A-Za-z][A-Za-z0-9_+-]*)\.)?(?P<name>ndcg|hr)@(?P<k>[0-9]+)"
)
_STORAGE_URL = re.compile(r"[a-z][a-z0-9+]*://.*")


# --- problems ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a spec, printed as ``FILE:LINE: key: what was expected``."""

    file: str
    line: int
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key}: {self.message}"


class SpecError(ConfigError):
    """A spec with problems; ``str()`` lists every one of them, one per line (exit code 2)."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


# --- YAML with line numbers --------------------------------------------------------------------


class LocatedDict(dict[Any, Any]):
    """A YAML mapping that remembers its own line and the line of each key."""

    def __init__(self, line: int = 0) -> None:
        super().__init__()
        self.line = line
        self.key_lines: dict[Any, int] = {}


class LocatedList(list[Any]):
    """A YAML sequence that remembers its own line and the line of each item."""

    def __init__(self, line: int = 0) -> None:
        super().__init__()
        self.line = line
        self.item_lines: list[int] = []


class _SpecLoader(yaml.SafeLoader):
    """Safe loading (no arbitrary tags) that keeps line numbers and reports duplicate keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[tuple[int, Any]] = []


def _construct_mapping(loader: _SpecLoader, node: yaml.MappingNode) -> Any:
    data = LocatedDict(node.start_mark.line + 1)
    yield data
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping",
                node.start_mark,
                "found an unhashable key",
                key_node.start_mark,
            ) from None
        if key in data:
            loader.duplicates.append((key_node.start_mark.line + 1, key))
        data[key] = loader.construct_object(value_node)
        data.key_lines[key] = key_node.start_mark.line + 1


def _construct_sequence(loader: _SpecLoader, node: yaml.SequenceNode) -> Any:
    data = LocatedList(node.start_mark.line + 1)
    data.item_lines = [child.start_mark.line + 1 for child in node.value]
    yield data
    data.extend(loader.construct_sequence(node))


_SpecLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)
_SpecLoader.add_constructor("tag:yaml.org,2002:seq", _construct_sequence)


def load_yaml(text: str, filename: str) -> tuple[Any, list[Problem]]:
    """Parse YAML safely; syntax errors and duplicate keys come back as problems."""
    loader = _SpecLoader(text)
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else 0
        what = error.problem or error.context or "syntax error"
        if error.context and error.problem and error.context_mark is not None:
            what += f" ({error.context} at line {error.context_mark.line + 1})"
        return None, [Problem(filename, line, "yaml", f"not valid YAML: {what}")]
    except yaml.YAMLError as error:  # pragma: no cover - unmarked errors are rare
        return None, [Problem(filename, 0, "yaml", f"not valid YAML: {error}")]
    finally:
        loader.dispose()
    problems = [
        Problem(filename, line, str(key), "duplicate key (each key may appear once per mapping)")
        for line, key in loader.duplicates
    ]
    return data, problems


# --- the typed spec ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Objective:
    """One validation metric the search optimises, e.g. ``valid.tail.ndcg@20``."""

    metric: str
    direction: str
    group: str
    name: str  # "ndcg@20": the key in the trainer's per-group metrics

    @property
    def mode(self) -> str:
        """Ray Tune's word for the direction."""
        return "max" if self.direction == "maximize" else "min"


@dataclass(frozen=True)
class SearchSettings:
    objectives: tuple[Objective, ...]
    trials: int
    sampler: str
    seed: int
    spaces: dict[str, SearchSpace]


@dataclass(frozen=True)
class SchedulerSettings:
    type: str
    grace_epochs: int = 1
    reduction_factor: float = 3.0
    min_samples: int = 3


@dataclass(frozen=True)
class ResourceSettings:
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    #: None = as many as the cluster's CPUs allow
    max_concurrent: int | None = None
    #: Ray-level retries of a trial whose worker died (a Python error is not retried)
    max_failures: int = 2


@dataclass(frozen=True)
class Cell:
    """One (dataset, backbone, method) combination of a study."""

    dataset: str  # a bundled name or an absolute path: what data.dataset receives
    dataset_label: str  # the name used in cell ids and result tables
    backbone: str
    method: str
    space: SearchSpace | None

    @property
    def cell_id(self) -> str:
        return f"{self.dataset_label}__{self.backbone}__{self.method}"


@dataclass(frozen=True)
class StudySpec:
    name: str
    description: str
    datasets: tuple[str, ...]
    dataset_labels: tuple[str, ...]
    backbones: tuple[str, ...]
    methods: tuple[str, ...]
    preset: str
    fixed: dict[str, Any]
    search: SearchSettings
    scheduler: SchedulerSettings
    resources: ResourceSettings
    final_seeds: int
    report_formats: tuple[str, ...]
    storage: str
    #: where the spec came from (a YAML file, or study.json for a resumed study)
    source: str = ""
    #: the YAML text as given (copied to studies/<name>/spec.yaml)
    text: str = field(default="", repr=False)
    #: retrain each searched cell's preset over the final seeds too (faerec.study.reference)
    final_reference: bool = True

    @property
    def multi_objective(self) -> bool:
        return len(self.search.objectives) > 1

    def cells(self) -> list[Cell]:
        return [
            Cell(dataset, label, backbone, method, self.search.spaces.get(method))
            for dataset, label in zip(self.datasets, self.dataset_labels, strict=True)
            for backbone in self.backbones
            for method in self.methods
        ]

    def trials_for(self, cell: Cell) -> int:
        """The trial target of a cell: 0 without a space; a grid caps it at its size."""
        if cell.space is None:
            return 0
        if self.search.sampler == "grid":
            size = cell.space.grid_size()
            if size is not None:
                return min(self.search.trials, size)
        return self.search.trials

    def overrides(self, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """The ``--set`` overrides of a trial: fixed, the selection metric, then the params.

        Early stopping selects on the study's metric unless the spec says otherwise, so a trial's
        value and its selected epoch agree.
        """
        out = dict(self.fixed)
        first = self.search.objectives[0]
        if first.group == "overall" and "train.select_metric" not in out:
            out["train.select_metric"] = first.name
        out.update(params or {})
        return out

    def cell_config(self, cell: Cell, params: dict[str, Any] | None = None) -> runconf.RunConfig:
        return runconf.resolve_config(
            cell.dataset, cell.backbone, cell.method, self.preset, self.overrides(params)
        )

    def to_dict(self) -> dict[str, Any]:
        """The resolved spec: every default filled in; :func:`spec_from_dict` reads it back."""
        metrics = [o.metric for o in self.search.objectives]
        directions = [o.direction for o in self.search.objectives]
        scheduler: dict[str, Any] = {"type": self.scheduler.type}
        if self.scheduler.type != "none":
            scheduler["grace_epochs"] = self.scheduler.grace_epochs
        if self.scheduler.type == "asha":
            scheduler["reduction_factor"] = self.scheduler.reduction_factor
        if self.scheduler.type == "median":
            scheduler["min_samples"] = self.scheduler.min_samples
        resources: dict[str, Any] = {
            "cpus_per_trial": self.resources.cpus_per_trial,
            "gpus_per_trial": self.resources.gpus_per_trial,
            "max_failures": self.resources.max_failures,
        }
        if self.resources.max_concurrent is not None:
            resources["max_concurrent"] = self.resources.max_concurrent
        return {
            "name": self.name,
            "description": self.description,
            "datasets": list(self.datasets),
            "backbones": list(self.backbones),
            "methods": list(self.methods),
            "preset": self.preset,
            "fixed": dict(self.fixed),
            "search": {
                "metric": metrics[0] if len(metrics) == 1 else metrics,
                "direction": directions[0] if len(directions) == 1 else directions,
                "trials": self.search.trials,
                "sampler": self.search.sampler,
                "seed": self.search.seed,
                "space": {m: s.to_spec() for m, s in self.search.spaces.items()},
            },
            "scheduler": scheduler,
            "resources": resources,
            "final": {"seeds": self.final_seeds, "reference": self.final_reference},
            "report": {"formats": list(self.report_formats)},
            "storage": self.storage,
        }


def identity(spec_dict: dict[str, Any]) -> dict[str, Any]:
    """The part of a resolved spec that defines what the results mean (see IDENTITY_KEYS)."""
    out: dict[str, Any] = {}
    for key in IDENTITY_KEYS:
        node: Any = spec_dict
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        out[key] = node
    return out


def spec_hash(spec_dict: dict[str, Any]) -> str:
    """A short hash of :func:`identity`: equal hashes, compatible results."""
    payload = json.dumps(identity(spec_dict), sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def changed_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Dotted paths of the identity keys that differ between two resolved specs."""
    changes: list[str] = []

    def walk(path: str, a: Any, b: Any) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b), key=str):
                walk(f"{path}.{key}", a.get(key), b.get(key))
        elif _canonical(a) != _canonical(b):
            changes.append(path)

    # through JSON, so that option keys read back from study.json ("0.2") equal YAML's (0.2)
    old_identity = json.loads(_canonical(identity(old)))
    new_identity = json.loads(_canonical(identity(new)))
    for key in IDENTITY_KEYS:
        walk(key, old_identity[key], new_identity[key])
    return changes


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


# --- parsing -----------------------------------------------------------------------------------


def parse_spec(path: str | Path) -> StudySpec:
    """Read, check and resolve a study YAML file (raises :class:`SpecError`)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        problem = Problem(str(path), 0, "spec", f"cannot read the file ({error.strerror})")
        raise SpecError([problem]) from None
    except UnicodeDecodeError:
        raise SpecError([Problem(str(path), 0, "spec", "expected a UTF-8 text file")]) from None
    return parse_spec_text(text, str(path), path.resolve().parent)


def parse_spec_text(text: str, filename: str, base_dir: Path) -> StudySpec:
    """Check YAML text; relative dataset paths resolve against (and must stay in) ``base_dir``."""
    data, problems = load_yaml(text, filename)
    if data is None and not problems:
        problems = [Problem(filename, 0, "spec", "the file is empty; expected a study mapping")]
    checker = _Checker(filename, problems)
    spec = None if problems else checker.study(data, base_dir, text)
    if checker.problems or spec is None:
        raise SpecError(checker.problems)
    return spec


def spec_from_dict(data: dict[str, Any], filename: str) -> StudySpec:
    """Rebuild a spec from :meth:`StudySpec.to_dict` output (study.json): trusted paths."""
    checker = _Checker(filename, [], stored=True)
    spec = checker.study(data, None, "")
    if checker.problems or spec is None:
        raise SpecError(checker.problems)
    return spec


def _describe(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"a boolean ({value!r})"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the text {value!r}"
    return f"{type(value).__name__} {value!r}"


def _line(container: Any, key: Any, default: int) -> int:
    """Line of ``container[key]`` (mapping key or list index); ``default`` when unknown."""
    if isinstance(container, LocatedDict):
        return container.key_lines.get(key, default)
    if (
        isinstance(container, LocatedList)
        and isinstance(key, int)
        and key < len(container.item_lines)
    ):
        return container.item_lines[key]
    return default


def _as_number(value: Any) -> float | int | None:
    """A YAML number, also from text such as ``1e-3`` (YAML 1.1 reads it as a string)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _hint(value: str, allowed: Iterable[str]) -> str:
    return did_you_mean(value, allowed)


@dataclass(frozen=True)
class _Node:
    """A YAML mapping under check: its dotted key prefix and its line."""

    data: dict[Any, Any]
    prefix: str
    line: int

    def line_of(self, key: Any) -> int:
        return _line(self.data, key, self.line)

    def key(self, key: Any) -> str:
        return f"{self.prefix}.{key}" if self.prefix else str(key)


class _Checker:
    """Walks the parsed YAML, records every :class:`Problem` and builds the typed spec.

    Getters record a problem and return the default for a bad value, so one pass finds every
    problem; the spec is only used when there were none. Cross-checks that resolve each cell's
    configuration run only on an otherwise clean spec.
    """

    def __init__(self, filename: str, problems: list[Problem], stored: bool = False) -> None:
        self.file = filename
        self.problems = problems
        #: reading study.json back (resume): every default is written out there
        self.stored = stored

    def error(self, line: int, key: str, message: str) -> None:
        self.problems.append(Problem(self.file, line, key, message))

    # -- generic getters -------------------------------------------------------------------

    def node(self, parent: _Node, name: str, allowed: Iterable[str] | None) -> _Node | None:
        """A sub-mapping (absent or empty = {}), with its unknown keys reported."""
        value = parent.data.get(name)
        line, key = parent.line_of(name), parent.key(name)
        if value is None:
            value = LocatedDict()
        if not isinstance(value, dict):
            self.error(line, key, f"expected a mapping, got {_describe(value)}")
            return None
        node = _Node(value, key, line)
        if allowed is not None:
            self.unknown_keys(node, allowed)
        return node

    def unknown_keys(self, node: _Node, allowed: Iterable[str]) -> None:
        allowed = list(allowed)
        for key in node.data:
            if key not in allowed:
                self.error(
                    node.line_of(key),
                    node.key(key),
                    f"unknown key; expected one of: {', '.join(allowed)}{_hint(str(key), allowed)}",
                )

    def integer(self, node: _Node, name: str, default: int, minimum: int) -> int:
        value = node.data.get(name)
        if name not in node.data:
            return default
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            what = (
                value
                if isinstance(value, int) and not isinstance(value, bool)
                else _describe(value)
            )
            self.error(
                node.line_of(name), node.key(name), f"expected an integer >= {minimum}, got {what}"
            )
            return default
        return value

    def number(self, node: _Node, name: str, default: float, minimum: float, strict: bool) -> float:
        if name not in node.data:
            return default
        value = _as_number(node.data[name])
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        if value is None or value < minimum or (strict and value == minimum):
            got = f"{value:g}" if value is not None else _describe(node.data[name])
            self.error(node.line_of(name), node.key(name), f"expected a number {bound}, got {got}")
            return default
        return float(value)

    def boolean(self, node: _Node, name: str, default: bool) -> bool:
        if name not in node.data:
            return default
        value = node.data[name]
        if not isinstance(value, bool):
            self.error(
                node.line_of(name),
                node.key(name),
                f"expected true or false, got {_describe(value)}",
            )
            return default
        return value

    def word(self, node: _Node, name: str, default: str, allowed: Iterable[str]) -> str:
        if name not in node.data:
            return default
        value = node.data[name]
        return self.one_of(value, node.line_of(name), node.key(name), allowed) or default

    def one_of(self, value: Any, line: int, key: str, allowed: Iterable[str]) -> str | None:
        allowed = list(allowed)
        if not isinstance(value, str) or value not in allowed:
            hint = _hint(value, allowed) if isinstance(value, str) else ""
            got = repr(value) if isinstance(value, str) else _describe(value)
            self.error(line, key, f"expected one of {', '.join(allowed)}, got {got}{hint}")
            return None
        return value

    def name_list(
        self, node: _Node, name: str, allowed: Iterable[str] | None
    ) -> list[tuple[str, int, str]]:
        """(item, line, key) of a required non-empty list of distinct names."""
        if name not in node.data:
            self.error(node.line, name, "missing; this key is required")
            return []
        value, line, key = node.data[name], node.line_of(name), node.key(name)
        if not isinstance(value, list) or not value:
            self.error(line, key, f"expected a non-empty list, got {_describe(value)}")
            return []
        items: list[tuple[str, int, str]] = []
        for index, item in enumerate(value):
            item_line, item_key = _line(value, index, line), f"{key}[{index}]"
            if allowed is not None:
                if self.one_of(item, item_line, item_key, allowed) is None:
                    continue
            elif not isinstance(item, str) or not item:
                self.error(item_line, item_key, f"expected a name, got {_describe(item)}")
                continue
            if item in [i for i, _, _ in items]:
                self.error(item_line, item_key, f"{item!r} is listed twice")
                continue
            items.append((item, item_line, item_key))
        return items

    def config_key(self, key: Any, node: _Node, searched: bool) -> bool:
        """A key of faerec.config that a study may set (``searched``: in a space)."""
        line, dotted = node.line_of(key), node.key(key)
        if not isinstance(key, str):
            self.error(
                line, dotted, f"expected a configuration key such as train.lr, got {_describe(key)}"
            )
            return False
        try:
            runconf.key_type(key)
        except ConfigError as error:
            self.error(line, dotted, str(error))
            return False
        if key in CELL_KEYS:
            self.error(
                line, dotted, "set by each cell (datasets, backbones, methods), not by the spec"
            )
            return False
        if searched and key in NOT_SEARCHABLE:
            self.error(
                line, dotted, "a budget or run setting: set it in fixed; it cannot be searched"
            )
            return False
        return True

    # -- the study ---------------------------------------------------------------------------

    def study(self, data: Any, base_dir: Path | None, text: str) -> StudySpec | None:
        if not isinstance(data, dict):
            self.error(1, "spec", f"expected a mapping of study keys, got {_describe(data)}")
            return None
        top = _Node(data, "", getattr(data, "line", 0))
        self.unknown_keys(top, TOP_LEVEL_KEYS)
        name = self.study_name(top)
        description = top.data.get("description") or ""
        if not isinstance(description, str):
            self.error(
                top.line_of("description"),
                "description",
                f"expected a text, got {_describe(description)}",
            )
        datasets = self.datasets(top, base_dir)
        backbones = [b for b, _, _ in self.name_list(top, "backbones", runconf.BACKBONES)]
        methods = [m for m, _, _ in self.name_list(top, "methods", list(runconf.METHODS))]
        preset = self.word(top, "preset", "official", runconf.PRESETS)
        fixed = self.fixed(top)
        search = self.search(top, methods)
        scheduler = self.scheduler(top, len(search.objectives) > 1)
        resources = self.resources(top)
        final = self.node(top, "final", ("seeds", "reference"))
        final_seeds = (
            DEFAULT_FINAL_SEEDS
            if final is None
            else self.integer(final, "seeds", DEFAULT_FINAL_SEEDS, 0)
        )
        final_reference = True if final is None else self.boolean(final, "reference", True)
        formats = self.report_formats(top)
        storage = top.data.get("storage") or ""
        if not isinstance(storage, str) or (storage and not _STORAGE_URL.fullmatch(storage)):
            self.error(
                top.line_of("storage"),
                "storage",
                "expected a database URL such as sqlite:///optuna.db or postgresql://user@host/db, "
                f"got {_describe(storage)}",
            )
        if self.problems:
            return None
        spec = StudySpec(
            name=name,
            description=str(description),
            datasets=tuple(d for d, _ in datasets),
            dataset_labels=tuple(label for _, label in datasets),
            backbones=tuple(backbones),
            methods=tuple(methods),
            preset=preset,
            fixed=fixed,
            search=search,
            scheduler=scheduler,
            resources=resources,
            final_seeds=final_seeds,
            final_reference=final_reference,
            report_formats=tuple(formats),
            storage=str(storage),
            source=self.file,
            text=text,
        )
        self.cells(spec, top)
        return None if self.problems else spec

    def study_name(self, top: _Node) -> str:
        value = top.data.get("name")
        if "name" not in top.data:
            self.error(top.line, "name", "missing; this key is required")
        elif not isinstance(value, str) or not _NAME.fullmatch(value) or value in (".", ".."):
            self.error(
                top.line_of("name"),
                "name",
                "expected a folder name of letters, digits, '.', '_' or '-' (not '.' or '..'), "
                f"got {_describe(value)}",
            )
        return str(value)

    def datasets(self, top: _Node, base_dir: Path | None) -> list[tuple[str, str]]:
        """(what data.dataset gets, the label in cell ids) per dataset."""
        resolved: list[tuple[str, str]] = []
        labels: dict[str, str] = {}
        for item, line, key in self.name_list(top, "datasets", None):
            if item in runconf.BUNDLED_DATASETS:
                dataset, label = item, item
            else:
                path = Path(item).expanduser()
                if not path.is_absolute():
                    if base_dir is None:
                        self.error(
                            line, key, f"expected an absolute path in a stored spec, got {item!r}"
                        )
                        continue
                    path = base_dir / path
                path = path.resolve()
                if base_dir is not None and not path.is_relative_to(base_dir.resolve()):
                    self.error(
                        line,
                        key,
                        f"expected a path inside the spec's folder ({base_dir.resolve()}), "
                        f"got {item!r}",
                    )
                    continue
                if not path.exists():
                    self.error(
                        line,
                        key,
                        f"expected a bundled dataset ({', '.join(runconf.BUNDLED_DATASETS)}) or an "
                        f"existing data folder or .inter file, got {item!r}"
                        + _hint(item, runconf.BUNDLED_DATASETS),
                    )
                    continue
                dataset, label = str(path), _dataset_label(path)
            if label in labels:
                self.error(
                    line,
                    key,
                    f"two datasets would share the name {label!r} ({labels[label]!r}, {item!r})",
                )
                continue
            labels[label] = item
            resolved.append((dataset, label))
        return resolved

    def fixed(self, top: _Node) -> dict[str, Any]:
        node = self.node(top, "fixed", None)
        fixed: dict[str, Any] = {}
        for key, value in ({} if node is None else node.data).items():
            assert node is not None
            if not self.config_key(key, node, searched=False):
                continue
            if isinstance(value, (dict, type(None))):
                self.error(
                    node.line_of(key), node.key(key), f"expected a value, got {_describe(value)}"
                )
                continue
            try:
                fixed[key] = runconf.coerce(key, value)
            except ConfigError as error:
                self.error(node.line_of(key), node.key(key), _strip_key(str(error), key))
        return fixed

    def report_formats(self, top: _Node) -> list[str]:
        node = self.node(top, "report", ("formats",))
        if node is None or "formats" not in node.data:
            return list(DEFAULT_REPORT_FORMATS)
        return [f for f, _, _ in self.name_list(node, "formats", REPORT_FORMATS)]

    # -- search ------------------------------------------------------------------------------

    def search(self, top: _Node, methods: list[str]) -> SearchSettings:
        node = self.node(top, "search", SEARCH_KEYS) or _Node(LocatedDict(), "search", 0)
        objectives = self.objectives(node)
        trials = self.integer(node, "trials", DEFAULT_TRIALS, 1)
        sampler = self.word(node, "sampler", "tpe", SAMPLERS)
        seed = self.integer(node, "seed", 0, 0)
        spaces = self.spaces(node, methods)
        if sampler == "grid":
            for method, space in spaces.items():
                if space.grid() is None:
                    self.error(
                        node.line_of("sampler"),
                        "search.sampler",
                        "grid needs choice, int or discrete parameters without branches; the "
                        f"space of {method!r} has a continuous or conditional parameter",
                    )
        return SearchSettings(tuple(objectives), trials, sampler, seed, spaces)

    def objectives(self, node: _Node) -> list[Objective]:
        raw_metrics = node.data.get("metric", DEFAULT_METRIC)
        raw_directions = node.data.get("direction", "maximize")
        metrics = raw_metrics if isinstance(raw_metrics, list) else [raw_metrics]
        directions = raw_directions if isinstance(raw_directions, list) else [raw_directions]
        if not metrics:
            self.error(
                node.line_of("metric"),
                "search.metric",
                "expected a metric such as valid.ndcg@20, got an empty list",
            )
            return [Objective(DEFAULT_METRIC, "maximize", "overall", "ndcg@20")]
        if isinstance(raw_directions, list) and len(directions) != len(metrics):
            self.error(
                node.line_of("direction"),
                "search.direction",
                f"expected one direction per metric ({len(metrics)}), got {len(directions)}",
            )
        elif len(directions) == 1:
            directions = directions * len(metrics)
        objectives: list[Objective] = []
        for index, (metric, direction) in enumerate(zip(metrics, directions, strict=False)):
            many = isinstance(raw_metrics, list)
            key = f"search.metric[{index}]" if many else "search.metric"
            line = _line(raw_metrics, index, node.line_of("metric"))
            many_directions = isinstance(raw_directions, list)
            direction = self.one_of(
                direction,
                _line(raw_directions, index, node.line_of("direction")),
                f"search.direction[{index}]" if many_directions else "search.direction",
                DIRECTIONS,
            )
            match = _METRIC.fullmatch(metric) if isinstance(metric, str) else None
            if match is None:
                hint = (
                    "; test metrics are never seen during the search"
                    if str(metric).startswith("test.")
                    else ""
                )
                self.error(
                    line,
                    key,
                    "expected valid.<ndcg|hr>@K or valid.<group>.<ndcg|hr>@K (group: overall, "
                    "head_items, tail_items, head_users, tail_users), "
                    f"got {_describe(metric)}{hint}",
                )
                continue
            if metric in [o.metric for o in objectives]:
                self.error(line, key, f"{metric!r} is listed twice")
                continue
            name = f"{match.group('name')}@{int(match.group('k'))}"
            objectives.append(
                Objective(metric, direction or "maximize", match.group("group") or "overall", name)
            )
        return objectives or [Objective(DEFAULT_METRIC, "maximize", "overall", "ndcg@20")]

    def spaces(self, search: _Node, methods: list[str]) -> dict[str, SearchSpace]:
        node = self.node(search, "space", None)
        spaces: dict[str, SearchSpace] = {}
        for method, params in ({} if node is None else node.data).items():
            assert node is not None
            line, key = node.line_of(method), node.key(method)
            if method not in methods:
                listed = ", ".join(methods) or "none"
                self.error(line, key, f"expected a method listed in methods ({listed})")
                continue
            if not isinstance(params, dict) or not params:
                self.error(
                    line,
                    key,
                    f"expected a mapping of parameters, got {_describe(params)} "
                    "(omit the method to run its preset)",
                )
                continue
            seen: dict[str, tuple[tuple[Any, ...], int]] = {}
            parsed = self.params(_Node(params, key, line), seen, frozenset())
            spaces[str(method)] = SearchSpace(parsed)
        return spaces

    def params(
        self, node: _Node, seen: dict[str, tuple[tuple[Any, ...], int]], enclosing: frozenset[str]
    ) -> tuple[Param, ...]:
        """One level of a space; ``seen`` maps each key to its distribution signature."""
        params: list[Param] = []
        for key, spec in node.data.items():
            line, dotted = node.line_of(key), node.key(key)
            if not self.config_key(key, node, searched=True):
                continue
            if key in enclosing:
                self.error(line, dotted, "already drawn by the choice that encloses it")
                continue
            param = self.param(
                key,
                spec,
                _Node(spec if isinstance(spec, dict) else {}, dotted, line),
                seen,
                enclosing,
            )
            if param is None:
                continue
            signature = (
                ("choice", param.choices) if param.kind == "choice" else (param.kind == "int",)
            )
            if key in seen and seen[key][0] != signature:
                self.error(
                    line,
                    dotted,
                    f"also searched at line {seen[key][1]} with another kind of distribution or "
                    "other options; every occurrence of a key must agree",
                )
                continue
            seen.setdefault(key, (signature, line))
            params.append(param)
        return tuple(params)

    def param(
        self,
        key: str,
        spec: Any,
        node: _Node,
        seen: dict[str, tuple[tuple[Any, ...], int]],
        enclosing: frozenset[str],
    ) -> Param | None:
        line, dotted = node.line, node.prefix
        words = [w for w in node.data if w in KINDS]
        if not isinstance(spec, dict) or len(words) != 1:
            got = ", ".join(map(str, spec)) or "none" if isinstance(spec, dict) else _describe(spec)
            self.error(
                line,
                dotted,
                f"expected one distribution ({', '.join(KINDS)}), e.g. {{uniform: [0.1, 0.9]}}, "
                f"got {got}",
            )
            return None
        self.unknown_keys(node, [*KINDS, "step", "log"])
        kind = words[0]
        hint = runconf.key_type(key)
        if get_origin(hint) is list:
            self.error(line, dotted, f"{key} holds a list; it cannot be searched (set it in fixed)")
            return None
        if kind == "choice":
            if "step" in spec or "log" in spec:
                self.error(line, dotted, "step and log do not apply to choice")
                return None
            return self.choice(key, node, seen, enclosing)
        if hint in (str, bool):
            self.error(line, dotted, f"{key} takes {hint.__name__} values; use {{choice: [...]}}")
            return None
        if kind != "int" and hint is int:
            self.error(line, dotted, f"{key} is an integer key; use {{int: [low, high]}}")
            return None
        bounds = self.bounds(kind, spec[kind], node.line_of(kind), dotted)
        if bounds is None:
            return None
        low, high, step = bounds
        log = spec.get("log", False)
        if not isinstance(log, bool) or (log and kind != "int"):
            self.error(
                node.line_of("log"), dotted + ".log", "expected true or false, with int only"
            )
            return None
        if "step" in spec:
            step_value = _as_number(spec["step"])
            integral = step_value is not None and float(step_value).is_integer()
            if (
                kind not in ("int", "uniform")
                or step_value is None
                or step_value <= 0
                or (kind == "int" and not integral)
            ):
                self.error(
                    node.line_of("step"),
                    dotted + ".step",
                    "expected a positive step (an integer for int), with int or uniform only",
                )
                return None
            step = int(step_value) if kind == "int" else float(step_value)
        if log and (step not in (None, 1) or low < 1):
            self.error(line, dotted, "a log-scaled int range needs low >= 1 and no step")
            return None
        if step is not None and kind != "int" and not _divides(high - low, step):
            self.error(line, dotted, f"expected (high - low) to be a multiple of step {step:g}")
            return None
        param = Param(key=key, kind=kind, low=low, high=high, step=step, log=log, line=line)
        self.check_values(key, [(low, line, dotted), (high, line, dotted)])
        return param

    def bounds(self, kind: str, value: Any, line: int, dotted: str) -> tuple[Any, Any, Any] | None:
        """(low, high, step) of a range; ``discrete`` is [low, high, step]."""
        shape = "[low, high, step]" if kind == "discrete" else "[low, high]"
        numbers = [_as_number(v) for v in value] if isinstance(value, list) else []
        if len(numbers) != (3 if kind == "discrete" else 2) or any(n is None for n in numbers):
            self.error(line, dotted, f"expected {kind}: {shape} with numbers, got {value!r}")
            return None
        low, high = float(numbers[0]), float(numbers[1])  # type: ignore[arg-type]
        step = float(numbers[2]) if kind == "discrete" else None  # type: ignore[arg-type]
        if kind == "int" and not (low.is_integer() and high.is_integer()):
            self.error(line, dotted, f"expected integers in int: {shape}, got {value!r}")
        elif low >= high:
            self.error(line, dotted, f"expected low < high, got [{low:g}, {high:g}]")
        elif kind == "loguniform" and low <= 0:
            self.error(line, dotted, f"expected a positive low bound for loguniform, got {low:g}")
        elif step is not None and step <= 0:
            self.error(line, dotted, f"expected a positive step, got {step:g}")
        else:
            return (int(low), int(high), None) if kind == "int" else (low, high, step)
        return None

    def choice(
        self,
        key: str,
        node: _Node,
        seen: dict[str, tuple[tuple[Any, ...], int]],
        enclosing: frozenset[str],
    ) -> Param | None:
        value, line = node.data["choice"], node.line_of("choice")
        if not isinstance(value, (list, dict)) or not value:
            self.error(
                line,
                node.prefix,
                "expected choice: a non-empty list of options, or a mapping from option to its "
                f"parameters, got {_describe(value)}",
            )
            return None
        is_list = isinstance(value, list)
        options: list[Any] = []
        branches: list[tuple[Any, tuple[Param, ...]]] = []
        before = len(self.problems)
        for index, item in enumerate(value):
            item_line = _line(value, index if is_list else item, line)
            item_key = f"{node.prefix}[{index}]" if is_list else f"{node.prefix}.{item}"
            option = self.option(key, item, item_line, item_key, options)
            if option is None or is_list:
                options += [] if option is None else [option]
                continue
            options.append(option)
            branch = value[item]
            if branch is not None and not isinstance(branch, dict):
                self.error(
                    item_line,
                    item_key,
                    f"expected the option's parameters, got {_describe(branch)}",
                )
                continue
            branch_node = _Node(branch or {}, item_key, item_line)
            branches.append((option, self.params(branch_node, seen, enclosing | {key})))
        if len(self.problems) > before:
            return None
        return Param(
            key, "choice", choices=tuple(options), branches=tuple(branches), line=node.line
        )

    def option(self, key: str, item: Any, line: int, dotted: str, options: list[Any]) -> Any:
        """One option of a choice, coerced to the key's type; None (and a problem) if bad."""
        if isinstance(item, (dict, list)) or item is None:
            self.error(line, dotted, f"expected a single value as option, got {_describe(item)}")
            return None
        try:
            option = runconf.coerce(key, item)
        except ConfigError as error:
            self.error(line, dotted, _strip_key(str(error), key))
            return None
        if option in options:
            self.error(line, dotted, f"option {item!r} is listed twice")
            return None
        if not self.check_values(key, [(option, line, dotted)]):
            return None
        return option

    def check_values(self, key: str, values: list[tuple[Any, int, str]]) -> bool:
        """Each bound or option must be a legal value of the key (e.g. a known gate name)."""
        for value, line, dotted in values:
            candidate = runconf.RunConfig()
            try:
                runconf.set_key(candidate, key, value)
                _check_one_key(candidate, key)
            except ConfigError as error:
                self.error(line, dotted, _strip_key(str(error), key))
                return False
        return True

    # -- scheduler and resources -----------------------------------------------------------

    def scheduler(self, top: _Node, multi_objective: bool) -> SchedulerSettings:
        node = self.node(top, "scheduler", None)
        if node is None:
            return SchedulerSettings("none")
        default = "none" if multi_objective and "scheduler" not in top.data else "asha"
        kind = self.word(node, "type", default, SCHEDULERS)
        self.unknown_keys(node, SCHEDULER_KEYS[kind])
        if multi_objective and kind != "none":
            self.error(
                node.line_of("type"),
                "scheduler.type",
                "a search over several metrics cannot stop trials on one of them; expected none",
            )
        defaults = SchedulerSettings(kind)
        allowed = SCHEDULER_KEYS[kind]
        return SchedulerSettings(
            type=kind,
            grace_epochs=self.integer(node, "grace_epochs", 1, 1)
            if "grace_epochs" in allowed
            else 1,
            reduction_factor=self.number(node, "reduction_factor", 3.0, 1.0, strict=True)
            if "reduction_factor" in allowed
            else defaults.reduction_factor,
            min_samples=self.integer(node, "min_samples", 3, 1) if "min_samples" in allowed else 3,
        )

    def resources(self, top: _Node) -> ResourceSettings:
        node = self.node(top, "resources", RESOURCE_KEYS)
        if node is None:
            return ResourceSettings()
        concurrent = None
        if node.data.get("max_concurrent") is not None:
            concurrent = self.integer(node, "max_concurrent", 1, 1)
        return ResourceSettings(
            cpus_per_trial=self.number(node, "cpus_per_trial", 1.0, 0.0, strict=True),
            gpus_per_trial=self.number(node, "gpus_per_trial", 0.0, 0.0, strict=False),
            max_concurrent=concurrent,
            max_failures=self.integer(node, "max_failures", 2, 0),
        )

    # -- cross-checks on every cell ----------------------------------------------------------

    def cells(self, spec: StudySpec, top: _Node) -> None:
        """Resolve each cell's configuration once, so a bad combination fails before any work."""
        fixed = self.node(top, "fixed", None)
        search = self.node(top, "search", None)
        metric_line = search.line_of("metric") if search is not None else top.line
        reported: set[str] = set()

        def report(line: int, key: str, message: str) -> None:
            if message not in reported:
                reported.add(message)
                self.error(line, key, message)

        for cell in spec.cells():
            try:
                config = runconf.resolve_config(
                    cell.dataset, cell.backbone, cell.method, spec.preset, spec.fixed
                )
            except ConfigError as error:
                key = str(error).split(":", 1)[0]
                where = fixed.line_of(key) if fixed is not None else top.line
                text = _strip_key(str(error), key) if key in spec.fixed else str(error)
                report(
                    where,
                    f"fixed.{key}" if key in spec.fixed else "fixed",
                    f"{text} (cell {cell.cell_id})",
                )
                continue
            for objective in spec.search.objectives:
                k = int(objective.name.split("@")[1])
                if k not in config.eval.ks:
                    message = f"K={k} is not among eval.ks {config.eval.ks} (cell {cell.cell_id})"
                    report(metric_line, "search.metric", message)
            self.budget(spec, cell, config, top, fixed, report)

    def budget(
        self,
        spec: StudySpec,
        cell: Cell,
        config: runconf.RunConfig,
        top: _Node,
        fixed: _Node | None,
        report: Callable[[int, str, str], None],
    ) -> None:
        """Refuse a cell that cannot select an epoch, or whose grace period judges no validation.

        The grace period is checked only where the spec writes it: left out, the runner uses the
        cell's first validated epoch (see docs/study-spec.md).
        """
        problem = selection_problem(config)
        if problem is not None:
            written = [k for k in ("train.max_epochs", "train.eval_start_epoch") if k in spec.fixed]
            line = fixed.line_of(written[0]) if written and fixed is not None else top.line
            key = f"fixed.{written[0]}" if written else "fixed"
            report(line, key, f"{problem} (cell {cell.cell_id}, preset {spec.preset})")
            return
        scheduler = top.data.get("scheduler")
        if (
            self.stored  # study.json writes every default out: only the user's file says
            or cell.space is None
            or spec.scheduler.type == "none"
            or not isinstance(scheduler, dict)
            or "grace_epochs" not in scheduler
        ):
            return
        problem = grace_problem(config, spec.scheduler.grace_epochs)
        if problem is not None:
            line = _line(scheduler, "grace_epochs", top.line_of("scheduler"))
            report(line, "scheduler.grace_epochs", f"{problem} (cell {cell.cell_id})")


def _divides(span: float, step: float) -> bool:
    ratio = span / step
    return abs(ratio - round(ratio)) < 1e-9 * max(1.0, abs(ratio))


def _check_one_key(config: runconf.RunConfig, key: str) -> None:
    """Run the config's own validation, keeping only complaints about ``key``."""
    try:
        runconf.validate(config)
    except ConfigError as error:
        if str(error).startswith(f"{key}:"):
            raise


def _strip_key(message: str, key: str) -> str:
    prefix = f"{key}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


def _dataset_label(path: Path) -> str:
    """A dataset's name in cell ids: the folder (or .inter file stem), in safe characters."""
    stem = path.stem if path.is_file() else path.name
    label = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "dataset"
    return label
