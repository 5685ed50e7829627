"""Typed run configuration: every key, its type, default and meaning, in one place.

A run is fully described by a :class:`RunConfig`. It is built in three layers:

1. the dataclass defaults below;
2. a *preset* (``official``: the authors' settings per dataset, backbone and method,
   docs/method.md §Presets), chosen by :func:`resolve_config`;
3. user overrides as dotted keys (``train.max_epochs=20``), from ``--set`` or a study's
   ``fixed:``/``space:`` sections.

The resolved configuration is saved next to every checkpoint and trial result, so a number can
always be traced back to the exact settings that produced it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Union, get_args, get_origin, get_type_hints

from faerec.errors import ConfigError
from faerec.text import did_you_mean, plural

BUNDLED_DATASETS = ("beauty", "yelp", "ml-100k")
BACKBONES = ("sasrec", "fmlprec", "lrurec", "gru4rec")
GATES = ("dimension", "scalar", "bilinear", "none")
CURRICULA = ("cosine", "linear", "constant")
FAERec_SCORING = ("official", "id", "gated")
EVAL_MODES = ("full", "sampled")
EVAL_MASKING = ("official", "clean")
POPULARITY_SOURCES = ("full", "train")
PRESETS = ("official", "none")
PRECISIONS = ("fp32", "fp32-strict", "bf16")
#: Whose official FAERec settings a dataset takes (``data.preset_as``): the authors ran Beauty,
#: Yelp and Food (Amazon Grocery_and_Gourmet_Food); ``generic`` = the authors' code defaults.
PRESET_AS = ("beauty", "yelp", "food", "generic")

#: Method names a study or ``train --method`` accepts, and the FAERec keys each one sets.
#: ``backbone`` is the plain ID model; the others are FAERec and its ablations.
METHODS: dict[str, dict[str, Any]] = {
    "backbone": {"faerec.enabled": False},
    "faerec": {"faerec.enabled": True},
    "faerec-no-gate": {"faerec.enabled": True, "faerec.gate": "none"},
    "faerec-no-item": {"faerec.enabled": True, "faerec.item_align": False},
    "faerec-no-feature": {"faerec.enabled": True, "faerec.feature_align": False},
    "faerec-no-align": {
        "faerec.enabled": True,
        "faerec.item_align": False,
        "faerec.feature_align": False,
    },
    "faerec-no-curriculum": {"faerec.enabled": True, "faerec.curriculum": "constant"},
    "faerec-no-split": {"faerec.enabled": True, "faerec.popularity_split": False},
    "faerec-id-scoring": {"faerec.enabled": True, "faerec.scoring": "id"},
}


def _doc(text: str, **kwargs: Any) -> Any:
    """A dataclass field whose documentation travels with it (read by ``describe_keys``)."""
    return field(metadata={"doc": text}, **kwargs)


@dataclass
class DataConfig:
    """Which data, and how it is split and grouped (docs/method.md §Split, §Head and tail)."""

    dataset: str = _doc(
        "bundled name (beauty, yelp, ml-100k) or a path to a folder in the generic format",
        default="beauty",
    )
    max_seq_length: int = _doc("sequences are left-padded/truncated to this length", default=50)
    head_ratio: float = _doc("share of items (by popularity) that are head items", default=0.2)
    popularity_source: str = _doc(
        "'full' counts every interaction, validation and test included (official); "
        "'train' counts training interactions only (no leakage)",
        default="full",
    )
    preset_as: str = _doc(
        "whose official FAERec settings the 'official' preset uses: beauty | yelp | food | "
        "generic (the authors' code defaults); empty = as the dataset declares it (bundled "
        "datasets; 'preset_as' in dataset.json), generic when it declares nothing",
        default="",
    )


@dataclass
class ModelConfig:
    """The backbone encoder (docs/method.md §Backbones)."""

    backbone: str = _doc("sasrec | fmlprec | lrurec | gru4rec", default="sasrec")
    hidden_size: int = _doc("embedding and hidden width d", default=128)
    num_layers: int = _doc("encoder layers (blocks)", default=2)
    num_heads: int = _doc("attention heads (SASRec)", default=2)
    hidden_dropout: float = _doc("dropout on hidden states and embeddings", default=0.5)
    attention_dropout: float = _doc("dropout on attention probabilities", default=0.5)
    initializer_range: float = _doc("std of the normal / truncated-normal init", default=0.02)
    truncated_init: bool = _doc(
        "LRURec only: every Linear and Embedding weight from N(0, std) cut at +-2 std, as "
        "FAERec's LRURec; false = as the authors' plain LRURec, cut only for the LRU "
        "projections and untruncated elsewhere (docs/method.md §Backbone parity)",
        default=True,
    )


@dataclass
class FAERecConfig:
    """FAERec on top of the backbone (docs/method.md §Model). Ignored when ``enabled`` is false."""

    enabled: bool = _doc("wrap the backbone with FAERec (false = plain backbone)", default=False)
    gate: str = _doc(
        "fusion gate: dimension (official) | scalar | bilinear (this project's) | none (even mix)",
        default="dimension",
    )
    tau: float = _doc("InfoNCE temperature of the item-level alignment", default=0.05)
    gamma: float = _doc("Barlow-Twins off-diagonal weight", default=0.005)
    align_weight: float = _doc("lambda: weight of the alignment losses in the total", default=0.2)
    item_align: bool = _doc("use the item-level (InfoNCE) alignment", default=True)
    feature_align: bool = _doc("use the feature-level (Barlow-Twins) alignment", default=True)
    popularity_split: bool = _doc(
        "compute Barlow-Twins separately on the high/low-popularity halves of the batch",
        default=True,
    )
    curriculum: str = _doc(
        "cosine (official, periodic) | linear (monotone ramp) | constant", default="cosine"
    )
    w_min: float = _doc("lowest item-level weight of the curriculum", default=0.9)
    w_max: float = _doc("highest item-level weight of the curriculum", default=1.0)
    period: int = _doc("cosine curriculum period P in epochs", default=30)
    warmup: int = _doc(
        "epochs of pure item-level alignment before the curriculum starts", default=0
    )
    ramp_epochs: int = _doc(
        "linear curriculum: epochs to ramp the item weight from w_max to w_min", default=30
    )
    constant_item_weight: float = _doc(
        "constant curriculum: the fixed item-level weight (feature weight = 1 - it)", default=0.5
    )
    scoring: str = _doc(
        "item table at evaluation: official = LN(E_id + Mapper(E_llm)) | id = E_id | "
        "gated = the gate applied to both item views",
        default="official",
    )
    pca_init: bool = _doc("initialise the ID table with PCA of the LLM embeddings", default=True)
    mapper_dropout: float = _doc("dropout inside the LLM adapter MLP", default=0.3)
    gate_dropout: float = _doc("dropout inside the gate MLP", default=0.1)


@dataclass
class EmbeddingConfig:
    """Where the LLM item embeddings come from (docs/method.md §LLM item embeddings)."""

    model: str = _doc(
        "'minilm' (packaged all-MiniLM-L6-v2), a local sentence-transformers model folder, "
        "or a .npy matrix (row = item id)",
        default="minilm",
    )
    template: str = _doc(
        "item text template with {field} placeholders; empty = the dataset's default", default=""
    )
    cache_dir: str = _doc(
        "embedding cache folder; empty = $FAEREC_CACHE_DIR, else the per-user cache "
        "(~/.cache/faerec-study/embeddings on Linux)",
        default="",
    )
    batch_size: int = _doc("sentences per encoder batch", default=64)


@dataclass
class TrainConfig:
    """The training loop (docs/method.md §Training objective)."""

    lr: float = _doc("Adam learning rate", default=1e-3)
    weight_decay: float = _doc("Adam weight decay", default=0.0)
    batch_size: int = _doc("training sequences per batch", default=256)
    max_epochs: int = _doc("upper bound on training epochs", default=500)
    patience: int = _doc(
        "validations without improvement before stopping; with FAERec's cosine curriculum, "
        "fewer epochs than faerec.period can stop a run inside a curriculum cycle: train, "
        "config, validate and run print a note, and the report flags such runs "
        "(docs/results.md)",
        default=10,
    )
    eval_start_epoch: int = _doc(
        "first epoch (0-based) at which validation runs; the official star_test S means S + 1 "
        "(the official code validates when epoch > S). If max_epochs ends earlier, only the "
        "last epoch is validated, so nothing is selected: train warns, a study refuses it",
        default=0,
    )
    eval_every: int = _doc("validate every k epochs once validation has started", default=1)
    select_metric: str = _doc(
        "validation metric for early stopping and selection", default="ndcg@20"
    )
    seed: int = _doc("seed for torch, numpy and negative sampling", default=2024)
    device: str = _doc("auto | cpu | cuda | cuda:N", default="auto")
    num_threads: int = _doc("torch CPU threads; 0 = leave torch's default", default=0)
    trim_padding: bool = _doc(
        "cut each batch to its longest sequence (absolute positions kept)", default=True
    )
    precision: str = _doc(
        "fp32: float32, with TF32 matrix products on CUDA devices that have them (Ampere and "
        "later; about 10 mantissa bits in products, float32 sums) | fp32-strict: IEEE float32 "
        "everywhere | bf16: training forward and loss under bfloat16 autocast (weights, Adam "
        "and evaluation stay float32). On the CPU fp32 and fp32-strict are the same",
        default="fp32",
    )
    compile: bool = _doc(
        "torch.compile the backbone's encoder (dynamic shapes); the first batches pay the "
        "compilation, which only long GPU runs win back",
        default=False,
    )


@dataclass
class EvalConfig:
    """Ranking protocol (docs/method.md §Ranking and metrics)."""

    mode: str = _doc(
        "full (rank all items, official) | sampled (answer vs N negatives)", default="full"
    )
    num_negatives: int = _doc("sampled mode: negatives per user", default=100)
    masking: str = _doc(
        "official: history scores set to 0, padding rows rankable | clean: both masked out",
        default="official",
    )
    ks: list[int] = _doc("cut-offs for HR@K and NDCG@K", default_factory=lambda: [5, 10, 20])
    batch_size: int = _doc("users per evaluation batch", default=1024)


@dataclass
class RunConfig:
    """Everything one training run needs; serialisable to and from plain JSON."""

    method: str = _doc("backbone | faerec | an ablation name (see METHODS)", default="backbone")
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    faerec: FAERecConfig = field(default_factory=FAERecConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> RunConfig:
        """Rebuild a config from :meth:`to_dict` output (unknown keys are an error)."""
        config = cls()
        for key, value in flatten(payload).items():
            set_key(config, key, value)
        validate(config)
        return config

    def flat(self) -> dict[str, Any]:
        """``{"section.key": value}`` for every key."""
        return flatten(self.to_dict())


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "faerec": FAERecConfig,
    "embedding": EmbeddingConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
}


def flatten(payload: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in payload.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def all_keys() -> list[str]:
    """Every settable dotted key, e.g. ``train.max_epochs``."""
    keys = ["method"]
    for section, cls in SECTIONS.items():
        keys.extend(f"{section}.{f.name}" for f in fields(cls))
    return keys


def key_type(key: str) -> type:
    """The Python type of a dotted key (raises ConfigError for an unknown key)."""
    if key == "method":
        return str
    section, _, name = key.partition(".")
    cls = SECTIONS.get(section)
    if cls is None or name not in {f.name for f in fields(cls)}:
        raise ConfigError(_unknown_key_message(key))
    hint = get_type_hints(cls)[name]
    return hint  # type: ignore[no-any-return]


def describe_keys() -> list[tuple[str, str, Any, str]]:
    """(key, type name, default, documentation) for every key: the source of docs tables."""
    rows: list[tuple[str, str, Any, str]] = [
        ("method", "str", "backbone", "backbone | faerec | ablation name")
    ]
    for section, cls in SECTIONS.items():
        hints = get_type_hints(cls)
        defaults = cls()
        for f in fields(cls):
            rows.append(
                (
                    f"{section}.{f.name}",
                    _type_name(hints[f.name]),
                    getattr(defaults, f.name),
                    f.metadata.get("doc", ""),
                )
            )
    return rows


def _type_name(hint: Any) -> str:
    if get_origin(hint) is list:
        return f"list[{get_args(hint)[0].__name__}]"
    return getattr(hint, "__name__", str(hint))


def _unknown_key_message(key: str) -> str:
    return f"unknown configuration key '{key}'{did_you_mean(key, all_keys())}"


def coerce(key: str, value: Any) -> Any:
    """Convert ``value`` (a YAML scalar or a ``--set`` string) to the key's type, or raise."""
    hint = key_type(key)
    try:
        if get_origin(hint) is list:
            (inner,) = get_args(hint)
            if isinstance(value, str):
                value = [v for v in value.strip("[]").split(",") if v.strip()]
            if not isinstance(value, (list, tuple)):
                raise ValueError
            return [_coerce_scalar(inner, v) for v in value]
        return _coerce_scalar(hint, value)
    except (TypeError, ValueError):
        raise ConfigError(f"expected {_type_name(hint)}, got {value!r}", key=key) from None


def _coerce_scalar(hint: Any, value: Any) -> Any:
    if get_origin(hint) is Union:
        hint = next(a for a in get_args(hint) if a is not type(None))
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        raise ValueError
    if hint is int:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError
            return int(value)
        return int(str(value).strip())
    if hint is float:
        if isinstance(value, bool):
            raise ValueError
        return float(value)
    if hint is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ValueError
        return str(value)
    raise TypeError(hint)


def set_key(config: RunConfig, key: str, value: Any) -> None:
    """Set one dotted key on ``config`` after type coercion."""
    value = coerce(key, value)
    if key == "method":
        config.method = value
        return
    section, _, name = key.partition(".")
    setattr(getattr(config, section), name, value)


def _choice(key: str, value: Any, allowed: tuple[str, ...] | list[str]) -> None:
    if value not in allowed:
        raise ConfigError(f"expected one of {', '.join(allowed)}, got {value!r}", key=key)


def validate(config: RunConfig) -> None:
    """Check value ranges and choices; raise ConfigError naming the key."""
    _choice("method", config.method, list(METHODS))
    _choice("model.backbone", config.model.backbone, BACKBONES)
    _choice("faerec.gate", config.faerec.gate, GATES)
    _choice("faerec.curriculum", config.faerec.curriculum, CURRICULA)
    _choice("faerec.scoring", config.faerec.scoring, FAERec_SCORING)
    _choice("eval.mode", config.eval.mode, EVAL_MODES)
    _choice("eval.masking", config.eval.masking, EVAL_MASKING)
    _choice("data.popularity_source", config.data.popularity_source, POPULARITY_SOURCES)
    _choice("train.precision", config.train.precision, PRECISIONS)
    if config.data.preset_as:
        _choice("data.preset_as", config.data.preset_as, PRESET_AS)
    positive = {
        "data.max_seq_length": config.data.max_seq_length,
        "model.hidden_size": config.model.hidden_size,
        "model.num_layers": config.model.num_layers,
        "model.num_heads": config.model.num_heads,
        "faerec.tau": config.faerec.tau,
        "faerec.period": config.faerec.period,
        "faerec.ramp_epochs": config.faerec.ramp_epochs,
        "train.lr": config.train.lr,
        "train.batch_size": config.train.batch_size,
        "train.max_epochs": config.train.max_epochs,
        "train.patience": config.train.patience,
        "train.eval_every": config.train.eval_every,
        "eval.num_negatives": config.eval.num_negatives,
        "eval.batch_size": config.eval.batch_size,
        "embedding.batch_size": config.embedding.batch_size,
    }
    for key, value in positive.items():
        if not value > 0:
            raise ConfigError(f"expected a positive number, got {value!r}", key=key)
    probabilities = {
        "data.head_ratio": config.data.head_ratio,
        "model.hidden_dropout": config.model.hidden_dropout,
        "model.attention_dropout": config.model.attention_dropout,
        "faerec.mapper_dropout": config.faerec.mapper_dropout,
        "faerec.gate_dropout": config.faerec.gate_dropout,
        "faerec.w_min": config.faerec.w_min,
        "faerec.w_max": config.faerec.w_max,
        "faerec.constant_item_weight": config.faerec.constant_item_weight,
    }
    for key, value in probabilities.items():
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"expected a value in [0, 1], got {value!r}", key=key)
    if config.faerec.w_min > config.faerec.w_max:
        raise ConfigError(
            f"expected <= faerec.w_max ({config.faerec.w_max}), got {config.faerec.w_min}",
            key="faerec.w_min",
        )
    for key, value in {
        "faerec.gamma": config.faerec.gamma,
        "faerec.align_weight": config.faerec.align_weight,
        "faerec.warmup": config.faerec.warmup,
        "train.weight_decay": config.train.weight_decay,
        "train.eval_start_epoch": config.train.eval_start_epoch,
        "train.num_threads": config.train.num_threads,
    }.items():
        if value < 0:
            raise ConfigError(f"expected a non-negative number, got {value!r}", key=key)
    if not config.eval.ks or any(k <= 0 for k in config.eval.ks):
        raise ConfigError(f"expected positive cut-offs, got {config.eval.ks!r}", key="eval.ks")
    metric = config.train.select_metric
    name, _, k = metric.partition("@")
    if name not in ("ndcg", "hr") or not k.isdigit() or int(k) not in config.eval.ks:
        raise ConfigError(
            f"expected ndcg@K or hr@K with K in eval.ks {config.eval.ks}, got {metric!r}",
            key="train.select_metric",
        )
    if config.model.backbone == "sasrec" and config.model.hidden_size % config.model.num_heads:
        raise ConfigError(
            f"expected a divisor of model.hidden_size ({config.model.hidden_size}), "
            f"got {config.model.num_heads}",
            key="model.num_heads",
        )


# --- presets -------------------------------------------------------------------------------

#: Plain-backbone settings of the authors' logs (docs/method.md §Presets): dropout, star_test.
_PLAIN_BACKBONE: dict[str, dict[str, Any]] = {
    "sasrec": {
        "model.hidden_dropout": 0.5,
        "model.attention_dropout": 0.5,
        "train.eval_start_epoch": 201,
    },
    "fmlprec": {
        "model.hidden_dropout": 0.5,
        "model.attention_dropout": 0.5,
        "train.eval_start_epoch": 301,
    },
    "lrurec": {
        "model.hidden_dropout": 0.4,
        "model.attention_dropout": 0.4,
        "model.truncated_init": False,
        "train.eval_start_epoch": 101,
    },
    # GRU4Rec is not in the official code; the SASRec settings serve as its preset.
    "gru4rec": {
        "model.hidden_dropout": 0.5,
        "model.attention_dropout": 0.5,
        "train.eval_start_epoch": 201,
    },
}

#: FAERec settings of the official runs, per (preset_as, backbone) (docs/method.md §Presets).
#: LRURec on Food has no valid official run: its row is our choice, explained there.
_FAERec_RUNS: dict[tuple[str, str], dict[str, Any]] = {
    ("beauty", "sasrec"): {
        "faerec.align_weight": 0.2,
        "faerec.w_min": 0.9,
        "faerec.period": 30,
        "train.eval_start_epoch": 61,
    },
    ("beauty", "fmlprec"): {
        "faerec.align_weight": 0.2,
        "faerec.w_min": 0.7,
        "faerec.period": 30,
        "train.eval_start_epoch": 61,
    },
    ("beauty", "lrurec"): {
        "faerec.align_weight": 0.2,
        "faerec.w_min": 0.9,
        "faerec.period": 15,
        "train.eval_start_epoch": 61,
    },
    ("yelp", "sasrec"): {
        "faerec.align_weight": 0.2,
        "faerec.w_min": 0.3,
        "faerec.period": 25,
        "train.eval_start_epoch": 51,
    },
    ("yelp", "fmlprec"): {
        "faerec.align_weight": 0.1,
        "faerec.w_min": 0.3,
        "faerec.period": 30,
        "train.eval_start_epoch": 61,
    },
    ("yelp", "lrurec"): {
        "faerec.align_weight": 0.2,
        "faerec.w_min": 0.3,
        "faerec.period": 15,
        "train.eval_start_epoch": 46,
    },
    ("food", "sasrec"): {
        "faerec.align_weight": 0.2,
        "faerec.w_min": 0.7,
        "faerec.period": 20,
        "train.eval_start_epoch": 61,
    },
    ("food", "fmlprec"): {
        "faerec.align_weight": 0.2,
        "faerec.w_min": 0.3,
        "faerec.period": 30,
        "train.eval_start_epoch": 61,
    },
    ("food", "lrurec"): {
        "faerec.align_weight": 0.2,
        "faerec.w_min": 0.3,
        "faerec.period": 25,
        "train.eval_start_epoch": 51,
    },
}


#: The authors' code defaults (``main.py``), which a dataset that declares no ``preset_as`` gets:
#: what running their code on new data without tuning flags would use.
_FAERec_GENERIC: dict[str, Any] = {
    "faerec.align_weight": 0.2,
    "faerec.w_min": 0.9,
    "faerec.period": 30,
    "train.eval_start_epoch": 61,
}

#: ``preset_as`` of the bundled datasets (ml-100k is not one of the authors' datasets).
BUNDLED_PRESET_AS = {"beauty": "beauty", "yelp": "yelp", "ml-100k": "generic"}

#: Help text of every ``--preset`` option.
PRESET_HELP = (
    "official: the authors' settings for this backbone and method, on the dataset named by "
    "data.preset_as (declared by the dataset, or --set data.preset_as=beauty|yelp|food|generic); "
    "none: the plain defaults of docs/configuration.md (default official)"
)


def preset_overrides(preset: str, preset_as: str, backbone: str, method: str) -> dict[str, Any]:
    """The dotted-key settings a preset gives one cell.

    ``preset_as`` picks whose official FAERec run supplies the curriculum (docs/method.md
    §Presets); an empty value means ``generic``. The plain backbones' settings do not depend on
    the dataset.
    """
    _choice("preset", preset, PRESETS)
    _choice("method", method, list(METHODS))
    _choice("data.preset_as", preset_as or "generic", PRESET_AS)
    if preset == "none":
        return dict(METHODS[method])
    if not METHODS[method].get("faerec.enabled"):
        return {**_PLAIN_BACKBONE[backbone], **METHODS[method]}
    # FAERec: dropout 0.4 everywhere; the curriculum of the chosen dataset's run. GRU4Rec has no
    # official run and takes SASRec's, as for its plain preset.
    if (preset_as or "generic") == "generic":
        run = _FAERec_GENERIC
    else:
        run = _FAERec_RUNS.get((preset_as, backbone), _FAERec_RUNS[(preset_as, "sasrec")])
    return {
        "model.hidden_dropout": 0.4,
        "model.attention_dropout": 0.4,
        **run,
        **METHODS[method],
    }


def declared_preset_as(dataset: str) -> tuple[str, str]:
    """(``preset_as``, where it was declared) of a dataset; ``("", "")`` when it declares none.

    Bundled datasets declare theirs in :data:`BUNDLED_PRESET_AS`; a folder (or the folder of a
    RecBole ``.inter`` file) in ``dataset.json``. A path that does not exist declares nothing:
    loading it fails later with the loader's own message.
    """
    if dataset in BUNDLED_PRESET_AS:
        return BUNDLED_PRESET_AS[dataset], "bundled dataset"
    from pathlib import Path

    from faerec.data.loaders import DATASET_FILE, read_dataset_json
    from faerec.data.parsing import json_key_line, read_lines
    from faerec.errors import DataError

    path = Path(dataset).expanduser()
    folder = path.parent if path.is_file() else path
    meta_path = folder / DATASET_FILE
    value = read_dataset_json(meta_path).get("preset_as", "")
    if value and value not in PRESET_AS:
        raise DataError(
            f"'preset_as': expected one of {', '.join(PRESET_AS)}, got {value!r}",
            path=meta_path,
            line=json_key_line("\n".join(read_lines(meta_path)), "preset_as"),
        )
    return value, (str(meta_path) if value else "")


def resolve_with_sources(
    dataset: str = "beauty",
    backbone: str = "sasrec",
    method: str = "backbone",
    preset: str = "official",
    overrides: dict[str, Any] | None = None,
    override_source: str = "--set",
) -> tuple[RunConfig, dict[str, str]]:
    """:func:`resolve_config`, plus where each key that a layer set came from.

    Layers, later ones winning: the defaults, the cell's options, the dataset's declared
    ``preset_as``, the preset, then ``overrides`` (labelled ``override_source``: ``--set`` or a
    study's ``fixed:``). Keys left at their default have no entry.
    """
    overrides = dict(overrides or {})
    config = RunConfig()
    sources: dict[str, str] = {}

    def apply(key: str, value: Any, source: str) -> None:
        set_key(config, key, value)
        sources[key] = source

    apply("method", method, "--method")
    apply("data.dataset", dataset, "--dataset")
    apply("model.backbone", backbone, "--backbone")
    for key in overrides:
        if key in ("method", "model.backbone", "data.dataset"):
            raise ConfigError("set it with its own option, not as an override", key=key)
    declared, where = declared_preset_as(dataset)
    if declared:
        apply("data.preset_as", declared, where)
    if "data.preset_as" in overrides:
        apply("data.preset_as", overrides["data.preset_as"], override_source)
    validate(config)  # a bad preset_as is reported as itself, before it picks a preset
    label = f"preset {preset}"
    if preset != "none":
        label += f" ({config.data.preset_as or 'generic'}, {backbone}, {method})"
    for key, value in preset_overrides(preset, config.data.preset_as, backbone, method).items():
        apply(key, value, "--method" if key in METHODS[method] else label)
    for key, value in overrides.items():
        apply(key, value, override_source)
    validate(config)
    return config, sources


def resolve_config(
    dataset: str = "beauty",
    backbone: str = "sasrec",
    method: str = "backbone",
    preset: str = "official",
    overrides: dict[str, Any] | None = None,
) -> RunConfig:
    """Defaults, then the preset of the cell, then ``overrides``; validated."""
    return resolve_with_sources(dataset, backbone, method, preset, overrides)[0]


def preset_notice(config: RunConfig, preset: str) -> str | None:
    """The one line a run prints when its preset fell back to the generic settings, else None.

    Only FAERec methods are concerned: the plain backbones' preset is the same on every dataset.
    """
    if preset == "none" or config.data.preset_as or not config.faerec.enabled:
        return None
    return (
        f"note: dataset {config.data.dataset} declares no preset_as, so FAERec uses the generic "
        "settings (the authors' code defaults); add a preset_as key to its dataset.json or "
        "--set data.preset_as=beauty|yelp|food|generic"
    )


def curriculum_period(flat: Mapping[str, Any]) -> int | None:
    """The period of a run's cosine curriculum when it moves the alignment weights, else None.

    ``flat`` maps dotted keys to values (``flatten(config.to_dict())``, or a stored config
    flattened: a key missing from an older store counts as off). Validation scores of such a
    run dip and recover once a period as the weight moves between the two losses
    (docs/results.md, "The curriculum and early stopping").
    """

    def value(key: str, default: Any = None) -> Any:
        found = flat.get(f"faerec.{key}")
        return default if found is None else found

    moves = (
        value("enabled")
        and value("curriculum") == "cosine"
        and float(value("w_min", 1.0)) < float(value("w_max", 1.0))
        and float(value("align_weight", 0.0)) > 0
        and (value("item_align") or value("feature_align"))
    )
    return int(value("period")) if moves and value("period") else None


def curriculum_notice(config: RunConfig) -> str | None:
    """The one line a run prints when early stopping waits fewer epochs than its cosine
    curriculum's period, so it can stop a run in a trough before the next, higher peak (None
    when max_epochs ends the run within one period of its first validation anyway: the budget
    binds, not patience)."""
    period = curriculum_period(flatten(config.to_dict()))
    waited = config.train.patience * config.train.eval_every
    validated = config.train.max_epochs - config.train.eval_start_epoch
    if period is None or waited >= period or validated <= period:
        return None
    return (
        f"note: early stopping waits {plural(waited, 'epoch')} without improvement "
        f"(train.patience x train.eval_every), fewer than the cosine curriculum's period of "
        f"{period} (faerec.period): a run can stop in a curriculum trough before its next, "
        "higher peak; the report flags such runs"
    )


def config_notices(config: RunConfig, preset: str) -> list[str]:
    """The notes a run prints before it starts (train, config, validate, run): settings that
    are valid but probably not what the user meant."""
    notices = (preset_notice(config, preset), curriculum_notice(config))
    return [notice for notice in notices if notice]


def parse_set_arguments(pairs: list[str]) -> dict[str, Any]:
    """``["train.lr=0.01", ...]`` -> ``{"train.lr": "0.01"}`` (values coerced later)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {pair!r}: expected section.key=value")
        key = key.strip()
        key_type(key)  # unknown key -> ConfigError
        out[key] = value.strip()
    return out


def keys_markdown() -> str:
    """The reference table of every key, as committed in docs/configuration.md."""
    lines = [
        "# Configuration keys",
        "",
        "Generated from `faerec/config.py` by `python -m faerec.config > docs/configuration.md`;",
        "a test keeps this file in step with the code. Set any key with",
        "`faerec-study train --set section.key=value`, or in a study's `fixed:` / `search.space:`.",
        "",
        "| key | type | default | meaning |",
        "|---|---|---|---|",
    ]
    for key, type_name, default, doc in describe_keys():
        lines.append(f"| `{key}` | {type_name} | `{default!r}` | {doc.replace('|', '/')} |")
    lines += [
        "",
        "## Methods",
        "",
        "| method | keys it sets |",
        "|---|---|",
    ]
    for method, keys in METHODS.items():
        settings = ", ".join(f"`{k}={v}`" for k, v in keys.items())
        lines.append(f"| `{method}` | {settings} |")
    return "\n".join(lines + _presets_markdown()) + "\n"


def _presets_markdown() -> list[str]:
    """The ``official`` preset's tables (where the numbers come from: docs/method.md §Presets)."""
    lines = [
        "",
        "## The `official` preset",
        "",
        "`faerec-study config --dataset D --backbone B --method M` prints the resolved settings",
        "of one cell with the source of each. Plain backbones (any dataset):",
        "",
        "| backbone | settings |",
        "|---|---|",
    ]
    for backbone, settings in _PLAIN_BACKBONE.items():
        lines.append(f"| {backbone} | {_settings(settings)} |")
    lines += [
        "",
        "FAERec and its ablations: `model.hidden_dropout=0.4`, `model.attention_dropout=0.4`, and",
        "by `data.preset_as` (gru4rec takes the sasrec row):",
        "",
        "| preset_as | backbone | settings |",
        "|---|---|---|",
    ]
    for (preset_as, backbone), settings in _FAERec_RUNS.items():
        lines.append(f"| {preset_as} | {backbone} | {_settings(settings)} |")
    lines.append(f"| generic | any | {_settings(_FAERec_GENERIC)} |")
    return lines


def _settings(settings: dict[str, Any]) -> str:
    return ", ".join(f"`{key}={value}`" for key, value in settings.items())


if __name__ == "__main__":
    print(keys_markdown(), end="")
