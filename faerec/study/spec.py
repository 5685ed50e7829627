"""A study file: parse, check and resolve it into a typed :class:`StudySpec`.

Every problem is collected, not just the first, and each one names the YAML line it comes from
(``FILE:LINE: key: what was expected``): the loader below records the line of every mapping key
and list item. Nothing here writes a file or starts a service, so ``faerec-study validate`` is
safe to run anywhere, and the same checks guard ``run`` before any work starts.

The keys themselves (type, default, range, meaning) are declared once, in
:mod:`faerec.study.schema`; this module checks a file against that declaration and adds what no
schema can say: dataset paths, the metrics, the search spaces (conditional branches, one
distribution per key), grid compatibility, and each cell's resolved configuration and budget.

The resolved spec (bundled dataset names or absolute paths, coerced values, every default
filled in) is what ``study.json`` stores; :func:`spec_from_dict` reads it back for ``resume``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_origin

import yaml
from pydantic import TypeAdapter, ValidationError

from faerec import config as runconf
from faerec.budget import grace_problem, selection_problem
from faerec.errors import ConfigError
from faerec.study.schema import (
    DIRECTIONS,
    SCHEDULERS,
    ResourceSettings,
    SchedulerSettings,
    SearchSection,
    Section,
    StudyFile,
    default_of,
    explain,
    identity_keys,
    section_of,
)
from faerec.study.schema import describe as _describe
from faerec.study.space import KINDS, Param, SearchSpace
from faerec.text import did_you_mean

#: keys whose change would mix incompatible results in one study (resume refuses them)
IDENTITY_KEYS = identity_keys()
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

_S = TypeVar("_S", bound=Section)

#: what :meth:`_Checker.declared_value` returns for a value that breaks its declaration
_INVALID = object()

_METRIC = re.compile(
    r"valid\.(?:(?P<group>[A-Za-z][A-Za-z0-9_+-]*)\.)?(?P<name>ndcg|hr)@(?P<k>[0-9]+)"
)


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
    """``search:`` as the runner uses it: the metrics as objectives, each method's space."""

    objectives: tuple[Objective, ...]
    trials: int
    sampler: str
    seed: int
    spaces: dict[str, SearchSpace]


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
    """A checked study: the resolved file (:class:`StudyFile`) and what is derived from it."""

    #: the resolved study file, every default filled in: what study.json stores
    file: StudyFile
    dataset_labels: tuple[str, ...]
    search: SearchSettings
    #: where the spec came from (a YAML file, or study.json for a resumed study)
    source: str = ""
    #: the YAML text as given (copied to studies/<name>/spec.yaml)
    text: str = field(default="", repr=False)

    @property
    def name(self) -> str:
        return self.file.name

    @property
    def description(self) -> str:
        return self.file.description

    @property
    def datasets(self) -> tuple[str, ...]:
        return tuple(self.file.datasets)

    @property
    def backbones(self) -> tuple[str, ...]:
        return tuple(self.file.backbones)

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(self.file.methods)

    @property
    def preset(self) -> str:
        return self.file.preset

    @property
    def fixed(self) -> dict[str, Any]:
        return dict(self.file.fixed)

    @property
    def scheduler(self) -> SchedulerSettings:
        return self.file.scheduler

    @property
    def resources(self) -> ResourceSettings:
        return self.file.resources

    @property
    def final_seeds(self) -> int:
        return self.file.final.seeds

    @property
    def final_reference(self) -> bool:
        """Retrain each searched cell's preset over the final seeds too (faerec.study.reference)."""
        return self.file.final.reference

    @property
    def final_extend_max_epochs(self) -> int:
        """The cap a final run that stopped at its own trains on to (0: none)."""
        return self.file.final.extend_max_epochs

    @property
    def report_formats(self) -> tuple[str, ...]:
        return tuple(self.file.report.formats)

    @property
    def storage(self) -> str:
        return self.file.storage

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
        """The resolved spec, every default filled in (the declaration's own serialisation, in
        the file's key order); :func:`spec_from_dict` reads it back."""
        return self.file.model_dump()


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

    Each declared key is checked on its own (:meth:`section`), so one pass finds every problem;
    the spec is only built when there were none. Cross-checks that resolve each cell's
    configuration run only on an otherwise clean spec.
    """

    def __init__(self, filename: str, problems: list[Problem], stored: bool = False) -> None:
        self.file = filename
        self.problems = problems
        #: reading study.json back (resume): every default is written out there
        self.stored = stored
        # what later keys need from earlier ones (None: the earlier key was bad)
        self.methods: list[str] | None = None
        self.labels: list[str] = []
        self.objectives: list[Objective] = [_default_objective()]
        self.spaces: dict[str, SearchSpace] = {}

    def error(self, line: int, key: str, message: str) -> None:
        self.problems.append(Problem(self.file, line, key, message))

    # -- checking against the declaration (faerec.study.schema) ----------------------------

    def mapping(self, parent: _Node, name: str) -> _Node | None:
        """A sub-mapping (absent or empty = {}); None, with a problem, for anything else."""
        value = parent.data.get(name)
        line, key = parent.line_of(name), parent.key(name)
        if value is None:
            value = LocatedDict()
        if not isinstance(value, dict):
            self.error(line, key, f"expected a mapping, got {_describe(value)}")
            return None
        return _Node(value, key, line)

    def section(
        self,
        model: type[_S],
        node: _Node,
        hooks: dict[str, Callable[[Any, _Node], Any]] | None = None,
        kind: str | None = None,
        defaults: dict[str, Any] | None = None,
    ) -> _S | None:
        """Check one mapping against its declaration; the resolved section, or None.

        Unknown keys first, then every declared key in declared order, each on its own, so that
        one bad value does not hide the next. A hook adds what the declaration cannot say: it
        gets the key's value (checked against the declared type; a section's raw value) and
        the mapping, reports its own problems and returns the resolved value. ``kind`` selects
        a variant's keys (the scheduler's type); ``defaults`` replace declared defaults.
        """
        hooks = hooks or {}
        allowed = model.keys(kind)
        self.unknown_keys(node, allowed)
        before = len(self.problems)
        values: dict[str, Any] = {}
        for name in allowed:
            declared = model.model_fields[name]
            sub = section_of(declared)
            if sub is not None and name not in hooks:
                child = self.mapping(node, name)
                values[name] = None if child is None else self.section(sub, child)
                continue
            if name in node.data:
                value = node.data[name]
            elif declared.is_required():
                self.error(node.line, node.key(name), "missing; this key is required")
                continue
            elif defaults and name in defaults:
                value = defaults[name]
            else:
                value = default_of(model, name)
            if sub is None:
                value = self.declared_value(model, name, value, node)
                if value is _INVALID:
                    continue
            values[name] = hooks[name](value, node) if name in hooks else value
        if len(self.problems) > before:
            return None
        return model.model_validate(values)

    def declared_value(self, model: type[Section], name: str, value: Any, node: _Node) -> Any:
        """``value`` as the declared type of ``model.name`` (``1e-3`` written as text becomes a
        number); :data:`_INVALID`, with a problem per fault, when it is not."""
        try:
            return _adapter(model, name).validate_python(value)
        except ValidationError as error:
            for detail in error.errors():
                where, message = explain(model.model_fields[name], detail)
                line = node.line_of(name)
                if where:
                    line = _line(node.data.get(name), where[0], line)
                key = node.key(name) + "".join(f"[{i}]" for i in where)
                self.error(line, key, message)
            return _INVALID

    def unknown_keys(self, node: _Node, allowed: Iterable[str]) -> None:
        allowed = list(allowed)
        for key in node.data:
            if key not in allowed:
                self.error(
                    node.line_of(key),
                    node.key(key),
                    f"unknown key; expected one of: {', '.join(allowed)}{_hint(str(key), allowed)}",
                )

    def one_of(self, value: Any, line: int, key: str, allowed: Iterable[str]) -> str | None:
        allowed = list(allowed)
        if not isinstance(value, str) or value not in allowed:
            hint = _hint(value, allowed) if isinstance(value, str) else ""
            got = repr(value) if isinstance(value, str) else _describe(value)
            self.error(line, key, f"expected one of {', '.join(allowed)}, got {got}{hint}")
            return None
        return value

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

    # -- the study ---------------------------------------------------------------------------

    def study(self, data: Any, base_dir: Path | None, text: str) -> StudySpec | None:
        if not isinstance(data, dict):
            self.error(1, "spec", f"expected a mapping of study keys, got {_describe(data)}")
            return None
        top = _Node(data, "", getattr(data, "line", 0))
        file = self.section(
            StudyFile,
            top,
            {
                "datasets": lambda value, node: self.datasets(value, node, base_dir),
                "methods": self.remember_methods,
                "fixed": self.fixed,
                "search": self.search,
                "scheduler": self.scheduler,
            },
        )
        if file is None or self.problems:
            return None
        spec = StudySpec(
            file=file,
            dataset_labels=tuple(self.labels),
            search=SearchSettings(
                objectives=tuple(self.objectives),
                trials=file.search.trials,
                sampler=file.search.sampler,
                seed=file.search.seed,
                spaces=self.spaces,
            ),
            source=self.file,
            text=text,
        )
        self.cells(spec, top)
        return None if self.problems else spec

    def remember_methods(self, methods: list[str], top: _Node) -> list[str]:
        """The listed methods: a space may only be given for one of them."""
        self.methods = methods
        return methods

    def datasets(self, items: list[str], top: _Node, base_dir: Path | None) -> list[str]:
        """What data.dataset gets, per dataset; their labels in cell ids go to ``self.labels``."""
        resolved: list[str] = []
        labels: dict[str, str] = {}
        for index, item in enumerate(items):
            line = _line(top.data.get("datasets"), index, top.line_of("datasets"))
            key = f"datasets[{index}]"
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
            resolved.append(dataset)
            self.labels.append(label)
        return resolved

    def fixed(self, value: Any, top: _Node) -> dict[str, Any]:
        node = self.mapping(top, "fixed")
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
                self.error(node.line_of(key), node.key(key), _about(error, key))
        return fixed

    # -- search ------------------------------------------------------------------------------

    def search(self, value: Any, top: _Node) -> SearchSection | None:
        node = self.mapping(top, "search")
        if node is None:
            return None
        section = self.section(
            SearchSection,
            node,
            {
                "metric": self.metric,
                "direction": lambda value, node: _one_or_list(
                    [o.direction for o in self.objectives]
                ),
                "space": lambda value, node: self.spaces_of(node),
            },
        )
        if section is not None and section.sampler == "grid":
            for method, space in self.spaces.items():
                if space.grid() is None:
                    self.error(
                        node.line_of("sampler"),
                        "search.sampler",
                        "grid needs choice, int or discrete parameters without branches; the "
                        f"space of {method!r} has a continuous or conditional parameter",
                    )
        return section

    def metric(self, raw_metrics: Any, node: _Node) -> Any:
        """The metrics as written (one, or a list); the objectives go to ``self.objectives``."""
        raw_directions = node.data.get("direction", default_of(SearchSection, "direction"))
        self.objectives = self.objectives_of(raw_metrics, raw_directions, node)
        return _one_or_list([o.metric for o in self.objectives])

    def objectives_of(self, raw_metrics: Any, raw_directions: Any, node: _Node) -> list[Objective]:
        metrics = raw_metrics if isinstance(raw_metrics, list) else [raw_metrics]
        directions = raw_directions if isinstance(raw_directions, list) else [raw_directions]
        if not metrics:
            self.error(
                node.line_of("metric"),
                "search.metric",
                "expected a metric such as valid.ndcg@20, got an empty list",
            )
            return [_default_objective()]
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
            objectives.append(_objective(match, direction or DIRECTIONS[0]))
        return objectives or [_default_objective()]

    def spaces_of(self, search: _Node) -> dict[str, Any]:
        """Each method's space as written back (study.json); the parsed ones go to self.spaces."""
        node = self.mapping(search, "space")
        spaces: dict[str, SearchSpace] = {}
        for method, params in ({} if node is None else node.data).items():
            assert node is not None
            line, key = node.line_of(method), node.key(method)
            if self.methods is not None and method not in self.methods:
                listed = ", ".join(self.methods) or "none"
                self.error(line, key, f"expected a method listed in methods ({listed})")
                continue
            if not isinstance(params, dict) or not params:
                self.error(
                    line,
                    key,
                    "expected a mapping of parameters, got "
                    f"{'an empty mapping' if params == {} else _describe(params)} "
                    "(omit the method to run its preset)",
                )
                continue
            seen: dict[str, tuple[tuple[Any, ...], int]] = {}
            parsed = self.params(_Node(params, key, line), seen, frozenset())
            spaces[str(method)] = SearchSpace(parsed)
        self.spaces = spaces
        return {method: space.to_spec() for method, space in spaces.items()}

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
            self.error(line, dotted, _about(error, key))
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
                self.error(line, dotted, _about(error, key))
                return False
        return True

    # -- scheduler and resources -----------------------------------------------------------

    # -- scheduler --------------------------------------------------------------------------

    def scheduler(self, value: Any, top: _Node) -> SchedulerSettings | None:
        """Its type decides which keys apply; a Pareto search defaults to (and needs) none."""
        node = self.mapping(top, "scheduler")
        if node is None:
            return None
        multi_objective = len(self.objectives) > 1
        default = (
            "none"
            if multi_objective and "scheduler" not in top.data
            else default_of(SchedulerSettings, "type")
        )
        kind = node.data.get("type", default)
        if not isinstance(kind, str) or kind not in SCHEDULERS:
            kind = default
        settings = self.section(SchedulerSettings, node, kind=kind, defaults={"type": default})
        if multi_objective and kind != "none":
            self.error(
                node.line_of("type"),
                "scheduler.type",
                "a search over several metrics cannot stop trials on one of them; expected none",
            )
        return settings

    def cells(self, spec: StudySpec, top: _Node) -> None:
        """Resolve each cell's configuration once, so a bad combination fails before any work."""
        fixed = self.mapping(top, "fixed")
        search = self.mapping(top, "search")
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
                ours = error.key is not None and error.key in spec.fixed
                where = fixed.line_of(error.key) if fixed is not None else top.line
                report(
                    where,
                    f"fixed.{error.key}" if ours else "fixed",
                    f"{error.detail if ours else error} (cell {cell.cell_id})",
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
        if error.key == key:
            raise


def _about(error: ConfigError, key: str) -> str:
    """An error's text, without its key when it is about ``key`` (the problem names the key)."""
    return error.detail if error.key == key else str(error)


def _one_or_list(values: list[Any]) -> Any:
    """One value as itself, several as a list: how metric and direction are written."""
    return values[0] if len(values) == 1 else values


def _objective(match: re.Match[str], direction: str) -> Objective:
    """The objective of a metric that matched :data:`_METRIC`."""
    name = f"{match.group('name')}@{int(match.group('k'))}"
    return Objective(match.group(0), direction, match.group("group") or "overall", name)


def _default_objective() -> Objective:
    """The declared default metric and direction (stands in for a bad one while checking)."""
    match = _METRIC.fullmatch(default_of(SearchSection, "metric"))
    assert match is not None
    return _objective(match, default_of(SearchSection, "direction"))


@functools.cache
def _adapter(model: type[Section], name: str) -> TypeAdapter[Any]:
    """A validator of one declared key on its own, so that one bad key hides no other."""
    declared = model.model_fields[name]
    hint: Any = declared.annotation
    if declared.metadata:
        hint = Annotated[(hint, *declared.metadata)]
    return TypeAdapter(hint, config=model.model_config)


def _dataset_label(path: Path) -> str:
    """A dataset's name in cell ids: the folder (or .inter file stem), in safe characters."""
    stem = path.stem if path.is_file() else path.name
    label = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "dataset"
    return label
