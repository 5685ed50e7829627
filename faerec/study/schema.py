"""The keys of a study file, declared once: type, default, range and meaning of each.

Each section of a study file is a pydantic model below. The same declaration

* checks a value (:mod:`faerec.study.spec` validates every key on its own, so that it can report
  all problems at once, each at its YAML line, and words them with :func:`explain`);
* fills in the defaults and serialises the resolved spec (``StudySpec.to_dict`` is
  ``model_dump``, the form study.json stores);
* renders the key tables of docs/study-spec.md (:mod:`faerec.study.schema_docs`; a test keeps
  them in step).

What no schema can say stays in :mod:`faerec.study.spec`: dataset paths, the metrics, the search
spaces and each cell's resolved configuration. Those keys are declared here as ``Any``, with
their default and documentation.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Union, get_args, get_origin

from annotated_types import Ge, Gt, MinLen
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    SerializerFunctionWrapHandler,
    model_serializer,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, PydanticCustomError, PydanticUndefined, core_schema

from faerec import config as runconf
from faerec.report import DEFAULT_FORMATS as DEFAULT_REPORT_FORMATS
from faerec.report import FORMATS as REPORT_FORMATS
from faerec.text import did_you_mean

SAMPLERS = ("tpe", "random", "cmaes", "grid")
SCHEDULERS = ("asha", "median", "none")
DIRECTIONS = ("maximize", "minimize")
DEFAULT_METRIC = "valid.ndcg@20"

_NAME = re.compile(r"[A-Za-z0-9._-]+")
_STORAGE_URL = re.compile(r"[a-z][a-z0-9+]*://.*")


# --- markers a declaration carries ---------------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    """What a value must be, in the words of its error (``expected <what>, got ...``)."""

    what: str


@dataclass(frozen=True)
class OneOf:
    """A text that takes one of a few words; a misspelt word gets a did-you-mean hint."""

    words: tuple[str, ...]

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def _check(self, value: str) -> str:
        if value not in self.words:
            raise ValueError("not one of the words")
        return value


@dataclass(frozen=True)
class Distinct:
    """A list whose items may not repeat; the error points at the repeated item."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    @staticmethod
    def _check(items: list[Any]) -> list[Any]:
        for index, item in enumerate(items):
            if item in items[:index]:
                raise PydanticCustomError(
                    "faerec_listed_twice",
                    "{item} is listed twice",
                    {"item": repr(item), "at": index},
                )
        return items


def _none_as_empty(value: Any) -> Any:
    """``description:`` written without a value means no description."""
    return "" if value is None else value


def _number_text(value: Any) -> Any:
    """YAML 1.1 reads ``1e-3`` as text; a number written that way is still a number."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _study_name(value: str) -> str:
    if not _NAME.fullmatch(value) or value in (".", ".."):
        raise ValueError("not a folder name")
    return value


def _storage_url(value: str) -> str:
    if value and not _STORAGE_URL.fullmatch(value):
        raise ValueError("not a database URL")
    return value


Text = Annotated[str, BeforeValidator(_none_as_empty)]
Number = Annotated[float, BeforeValidator(_number_text)]
Name = Annotated[str, Field(min_length=1), Expect("a name")]
StudyName = Annotated[
    str,
    AfterValidator(_study_name),
    Expect("a folder name of letters, digits, '.', '_' or '-' (not '.' or '..')"),
]
StorageUrl = Annotated[
    str,
    BeforeValidator(_none_as_empty),
    AfterValidator(_storage_url),
    Expect("a database URL such as sqlite:///optuna.db or postgresql://user@host/db"),
]
Backbone = Annotated[str, OneOf(runconf.BACKBONES)]
Method = Annotated[str, OneOf(tuple(runconf.METHODS))]
Preset = Annotated[str, OneOf(runconf.PRESETS)]
Sampler = Annotated[str, OneOf(SAMPLERS)]
SchedulerType = Annotated[str, OneOf(SCHEDULERS)]
ReportFormat = Annotated[str, OneOf(REPORT_FORMATS)]


def key(
    doc: str,
    default: Any = PydanticUndefined,
    *,
    shown: str | None = None,
    type_text: str | None = None,
    only: tuple[str, ...] | None = None,
    identity: bool = False,
    **constraints: Any,
) -> Any:
    """A declared key: its documentation, default and range, plus what the docs and checks need.

    ``shown``: the default as the docs say it, when the value alone does not tell (e.g. "the
    cell's first validated epoch"); ``type_text``: the type column, when the annotation does not
    tell; ``only``: the scheduler types the key applies to; ``identity``: a change of the key
    changes what the results mean (resume refuses it).
    """
    notes: dict[str, Any] = {"identity": identity}
    for name, value in (("shown", shown), ("type", type_text), ("only", only)):
        if value is not None:
            notes[name] = value
    return Field(default, description=doc, json_schema_extra=notes, **constraints)


def extra(field: FieldInfo, name: str) -> Any:
    """One of the notes :func:`key` stores on a field (None when absent)."""
    notes = field.json_schema_extra
    return notes.get(name) if isinstance(notes, dict) else None


class Section(BaseModel):
    """One mapping of a study file: strict types, no unknown keys, immutable once resolved."""

    model_config = ConfigDict(strict=True, frozen=True, extra="forbid", allow_inf_nan=False)

    @classmethod
    def keys(cls, kind: str | None = None) -> list[str]:
        """The keys a mapping of this section may hold (``kind``: a scheduler type)."""
        return [
            name
            for name, field in cls.model_fields.items()
            if kind is None or extra(field, "only") is None or kind in extra(field, "only")
        ]

    def kind(self) -> str | None:
        """The variant that decides which keys apply (the scheduler's type); None: all do."""
        return None

    @model_serializer(mode="wrap")
    def _dump(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Every key that applies, defaults included; an unset optional key (None) is left out."""
        data: dict[str, Any] = handler(self)
        kept = self.keys(self.kind())
        return {name: value for name, value in data.items() if name in kept and value is not None}


# --- the declaration ------------------------------------------------------------------------------


class SearchSection(Section):
    """``search:``: what to optimise and over which space."""

    metric: Any = key(
        "The validation metric a trial is scored by: `valid.<ndcg|hr>@K` (all users) or "
        "`valid.<group>.<ndcg|hr>@K` with group `overall`, `head_items`, `tail_items`, "
        "`head_users`, `tail_users`. `K` must be in the cell's `eval.ks`. Test metrics are never "
        "used during the search. A list of metrics (e.g. `[valid.head_items.ndcg@20, "
        "valid.tail_items.ndcg@20]`) makes a Pareto search.",
        DEFAULT_METRIC,
        type_text="text, or a list of texts",
        identity=True,
    )
    direction: Any = key(
        "One direction for all metrics, or one per metric.",
        "maximize",
        type_text=f"{' | '.join(f'`{d}`' for d in DIRECTIONS)}, or a list",
        identity=True,
    )
    trials: int = key(
        "Trials per cell that has a space (with `grid`, at most the grid's size). Raising it later "
        "extends the study.",
        20,
        ge=1,
    )
    sampler: Sampler = key(
        "Optuna's sampler. `cmaes` handles categorical parameters by independent random "
        "sampling; `grid` needs every parameter finite (choice lists, `int`, `discrete`) and "
        "unconditional.",
        "tpe",
    )
    seed: int = key(
        "Sampler seed. When a study is resumed or extended, the new sampler gets `seed + number "
        "of trials so far`, so no configuration is proposed again.",
        0,
        ge=0,
    )
    space: Any = key(
        "The search space of each method (below). A listed method without a space runs its "
        "preset configuration (fixed keys applied) in the final stage only.",
        default_factory=dict,
        type_text="mapping method → parameters",
        identity=True,
    )


class SchedulerSettings(Section):
    """``scheduler:``: early stopping of weak trials (its type decides which keys apply)."""

    type: SchedulerType = key(
        "Ray Tune's ASHA, the median stopping rule, or no early stopping. A Pareto search only "
        "allows `none`.",
        "asha",
        shown="`asha` (`none` for a Pareto search)",
    )
    grace_epochs: int = key(
        "No trial is stopped before this many epochs (1-based). Left out, each searched cell "
        "uses its own first validated epoch, `train.eval_start_epoch + 1` (the 62nd epoch for "
        "FAERec-SASRec on Beauty under the official preset). Written out, it must lie between "
        "that epoch and `train.max_epochs` for every searched cell, or `validate` refuses it: a "
        "shorter grace would judge trials before they validate, a longer one would never stop a "
        "trial. A short grace saves the most and misranks the most: in the flagship study "
        "(grace 8) the paper defaults were pruned at epoch 24 with valid NDCG@20 0.0590 and "
        "reach 0.0621 at their own early stop (46 epochs), level with the best trial "
        "(docs/results.md).",
        1,
        ge=1,
        shown="the cell's first validated epoch",
        only=("asha", "median"),
    )
    reduction_factor: Number = key(
        "ASHA keeps the best 1/`reduction_factor` at each rung.",
        3.0,
        gt=1.0,
        only=("asha",),
    )
    min_samples: int = key(
        "The median rule compares against at least this many other trials; with fewer, a trial "
        "continues.",
        3,
        ge=1,
        only=("median",),
    )

    def kind(self) -> str | None:
        return self.type


class ResourceSettings(Section):
    """``resources:``: what each trial gets, how many at once."""

    cpus_per_trial: Number = key(
        "CPUs Ray reserves for a trial (and a final-stage run). Torch in the trial uses "
        "`max(1, floor(cpus_per_trial))` threads, unless `fixed` sets `train.num_threads`.",
        1.0,
        gt=0.0,
    )
    gpus_per_trial: Number = key(
        "GPUs (or a fraction, e.g. `0.25` for four trials per GPU). Used only when the Ray "
        "cluster has GPUs; on a CPU-only cluster trials get 0 (a GPU request there would wait "
        "forever). Trials without a GPU run with `train.device: cpu` unless `fixed` says "
        "otherwise. Each trial's progress line shows its peak GPU memory per epoch (`gpu 412 "
        "MiB`), which tells how small the fraction can be; see "
        "[benchmarks.md](benchmarks.md#packing-trials-on-one-gpu).",
        0.0,
        ge=0.0,
    )
    #: None = as many as the cluster's CPUs allow
    max_concurrent: int | None = key(
        "Trials (and final-stage runs) at a time. `--max-concurrent N` on the command line "
        "overrides it.",
        None,
        ge=1,
        shown="CPUs ÷ `cpus_per_trial`",
    )
    max_failures: int = key(
        "Ray-level retries of a trial whose worker process died (out of memory, a lost node), "
        "from its last checkpoint. A Python error in training (a NaN loss, bad data) is not "
        "retried: the trial is recorded as FAIL with its message and the search goes on.",
        2,
        ge=0,
    )


class FinalSettings(Section):
    """``final:``: the final stage, on test."""

    seeds: int = key(
        "Each cell's best configuration (the preset for a cell without a space) is retrained "
        "with this many seeds and evaluated once on test: seed `i` trains with `train.seed + i` "
        "(2024, 2025, … with the default seed). `0` skips the final stage. Raising it later runs "
        "only the new seeds.",
        5,
        ge=0,
    )
    reference: bool = key(
        "Also retrain each *searched* cell's preset configuration (its preset plus `fixed`, no "
        "searched value) over the same seeds, as a reference row: the report shows it as "
        '`<method>-defaults` ("SASRec + FAERec, paper defaults") between the backbone and the '
        "tuned row, and tests the tuned row against it. `false` leaves it out (the search's "
        "first trial is still the preset).",
        True,
    )
    extend_max_epochs: int = key(
        "A final run that stops at its `train.max_epochs` cap has not converged. With a value "
        "above a cell's cap, such a run trains on from its last checkpoint up to this many "
        "epochs, exactly as if it had had this cap from the start (its result records the cap "
        "it ran under); one that reaches this cap too is reported as not converged. `0`, or a "
        "value at or below the cap: off. Set it before the final stage: a finished run is not "
        "reopened.",
        0,
        ge=0,
    )


class ReportSettings(Section):
    """``report:``: the report written at the end of ``run``."""

    formats: Annotated[list[ReportFormat], Distinct()] = key(
        "Formats of the report written to `reports/<name>/` at the end of `run` (the same as "
        "`faerec-study report --format`).",
        default_factory=lambda: list(DEFAULT_REPORT_FORMATS),
        min_length=1,
    )


class StudyFile(Section):
    """A whole study file; resolved (paths absolute, every default filled in), study.json."""

    name: StudyName = key(
        "The study's folder under `studies/` and `reports/`: letters, digits, `.`, `_`, `-` "
        "only, and not `.` or `..` (a name can never escape its folder).",
        type_text="text",
    )
    description: Text = key("Shown in the report and by `status`.", "")
    datasets: Annotated[list[Name], Distinct()] = key(
        "Bundled names (`beauty`, `yelp`, `ml-100k`) or paths to data in the generic format (a "
        "folder with `sequences.txt` + `items.jsonl`, or a RecBole `.inter` file; see "
        "docs/data-format.md). A relative path is read from the spec file's folder and must "
        "stay inside it. A path's folder name (or `.inter` file stem) names the dataset in cell "
        "ids and tables.",
        min_length=1,
        type_text="list of texts",
        identity=True,
    )
    backbones: Annotated[list[Backbone], Distinct()] = key(
        "The backbone encoders compared.", min_length=1, identity=True
    )
    methods: Annotated[list[Method], Distinct()] = key(
        "`backbone` is the plain ID model, `faerec` the full method, the others its ablations "
        "(their settings: `faerec.config.METHODS`).",
        min_length=1,
        identity=True,
    )
    preset: Preset = key(
        "Start each cell from the authors' settings for its dataset, backbone and method "
        "(docs/configuration.md), or from the plain defaults. Which of the authors' datasets a "
        "dataset takes its FAERec settings from is its `preset_as` (docs/method.md §Presets): "
        "declared by the dataset, or set for all cells with `fixed: {data.preset_as: food}`; a "
        "dataset that declares none gets the generic settings, and `validate`/`run` say so in "
        "one line. `faerec-study config` prints a cell's resolved settings.",
        "official",
        identity=True,
    )
    fixed: Any = key(
        "Run-configuration keys (the `--set` keys of docs/configuration.md) applied to every "
        "trial and final run of every cell, after the preset. Values are converted to the key's "
        "type (`train.lr: 1e-3` is fine). `method`, `data.dataset` and `model.backbone` are set "
        "by the cell and cannot be fixed. `validate` and `run` note each FAERec cell whose "
        "early stopping waits fewer epochs (`train.patience` x `train.eval_every`) than its "
        "cosine curriculum's period, which can stop its runs in a curriculum trough "
        '(docs/results.md, "The curriculum and early stopping").',
        default_factory=dict,
        type_text="mapping key → value",
        identity=True,
    )
    search: SearchSection = key(
        "What to optimise and over which space.", default_factory=SearchSection
    )
    scheduler: SchedulerSettings = key(
        "Early stopping of weak trials.", default_factory=SchedulerSettings, identity=True
    )
    resources: ResourceSettings = key(
        "What each trial gets, how many at once.", default_factory=ResourceSettings
    )
    final: FinalSettings = key("The final stage.", default_factory=FinalSettings)
    report: ReportSettings = key("The report written at the end.", default_factory=ReportSettings)
    storage: StorageUrl = key(
        "An Optuna database URL (`sqlite:///optuna.db`, `postgresql://user@host/db`) used "
        "instead of the per-cell journal files, so that several drivers can share the studies "
        "(docs/scaling.md). Empty: `cells/<id>/optuna.journal`, no service needed.",
        "",
        type_text="text",
        identity=True,
    )


def default_of(model: type[Section], name: str) -> Any:
    """The declared default of ``model.name`` (a fresh copy of a list or mapping)."""
    return model.model_fields[name].get_default(call_default_factory=True)


def section_of(field: FieldInfo) -> type[Section] | None:
    """The section model a field holds, if it holds one."""
    hint = field.annotation
    return hint if isinstance(hint, type) and issubclass(hint, Section) else None


def identity_keys(model: type[Section] = StudyFile, prefix: str = "") -> tuple[str, ...]:
    """Dotted keys whose change would mix incompatible results in one study."""
    out: list[str] = []
    for name, field in model.model_fields.items():
        sub = section_of(field)
        if extra(field, "identity"):
            out.append(prefix + name)
        elif sub is not None:
            out.extend(identity_keys(sub, f"{prefix}{name}."))
    return tuple(out)


# --- what an error says --------------------------------------------------------------------------


def parts(hint: Any, metadata: Iterable[Any] = ()) -> tuple[Any, list[Any]]:
    """(the bare type, every marker and constraint on it), unwrapping Annotated and Optional."""
    found = list(metadata)
    while get_origin(hint) is Annotated:
        hint, *more = get_args(hint)
        found += more
    if get_origin(hint) is Union or type(hint).__name__ == "UnionType":
        hint = next(a for a in get_args(hint) if a is not type(None))
    return hint, found


def item_type(field: FieldInfo) -> Any:
    """The declared type of a list field's items."""
    hint, _ = parts(field.annotation)
    return get_args(hint)[0]


def expected(hint: Any, metadata: Iterable[Any] = ()) -> str:
    """What a value of this type must be, e.g. ``an integer >= 1`` or ``one of tpe, random``."""
    base, marks = parts(hint, metadata)
    for mark in marks:
        if isinstance(mark, Expect):
            return mark.what
        if isinstance(mark, OneOf):
            return f"one of {', '.join(mark.words)}"
    bound = ""
    for mark in marks:
        if isinstance(mark, Ge):
            bound = f" >= {mark.ge:g}"
        elif isinstance(mark, Gt):
            bound = f" > {mark.gt:g}"
    if base is bool:
        return "true or false"
    if base is int:
        return "an integer" + bound
    if base is float:
        return "a number" + bound
    if base is str:
        return "a text"
    if get_origin(base) is list:
        short = any(isinstance(m, MinLen) and m.min_length > 0 for m in marks)
        return "a non-empty list" if short else "a list"
    if isinstance(base, type) and issubclass(base, Section):
        return "a mapping"
    return "a value"


def describe(value: Any) -> str:
    """A value as an error message shows what it got: ``the text 'x'``, ``a list``."""
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


def _got(value: Any, base: Any, words: OneOf | None) -> str:
    """The value as the error shows it: a number as written where a number was expected."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if base is int and number and isinstance(value, int):
        return str(value)
    if base is float and number and math.isfinite(value):
        return f"{value:g}"
    if words is not None and isinstance(value, str):
        return repr(value) + did_you_mean(value, words.words)
    return describe(value)


def explain(field: FieldInfo, error: ErrorDetails) -> tuple[tuple[int | str, ...], str]:
    """(where in the value, message) of a pydantic error about one field's value.

    The message comes from the declaration, not from pydantic's words, so every problem with a
    key reads ``expected <what the declaration says>, got <the value>``.
    """
    if error["type"].startswith("faerec_"):  # our own, already in our words
        ctx = error.get("ctx") or {}
        return (*error["loc"], ctx["at"]) if "at" in ctx else error["loc"], error["msg"]
    hint, marks = field.annotation, list(field.metadata)
    if error["loc"]:  # an item of a list
        hint, marks = item_type(field), []
    base, found = parts(hint, marks)
    words = next((m for m in found if isinstance(m, OneOf)), None)
    value = error["input"]
    if base is float and words is None:
        value = _number_text(value)
    return error["loc"], f"expected {expected(hint, marks)}, got {_got(value, base, words)}"
