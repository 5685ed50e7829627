"""Presets chosen by an explicit ``preset_as``, and the `config` command that shows them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from faerec.cli import main
from faerec.commands.prepare import amazon_preset_as
from faerec.config import (
    BACKBONES,
    METHODS,
    PRESET_AS,
    RunConfig,
    curriculum_notice,
    preset_notice,
    resolve_config,
    resolve_with_sources,
)
from faerec.data import load_dataset
from faerec.errors import ConfigError, DataError


def _curriculum(config: RunConfig) -> tuple[float, float, int, int]:
    return (
        config.faerec.align_weight,
        config.faerec.w_min,
        config.faerec.period,
        config.train.eval_start_epoch,
    )


def _folder(tmp_path: Path, meta: dict[str, object] | None) -> Path:
    """A tiny generic-format dataset, with ``meta`` as its dataset.json when given."""
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "sequences.txt").write_text("1 1 2 3\n2 2 3 1\n", encoding="utf-8")
    items = [{"item_id": i, "title": f"item {i}"} for i in (1, 2, 3)]
    (folder / "items.jsonl").write_text(
        "".join(json.dumps(item) + "\n" for item in items), encoding="utf-8"
    )
    if meta is not None:
        (folder / "dataset.json").write_text(json.dumps(meta), encoding="utf-8")
    return folder


# --- the official FAERec rows ------------------------------------------------------------------


def test_food_sasrec_gets_the_authors_food_settings() -> None:
    config = resolve_config("beauty", "sasrec", "faerec", overrides={"data.preset_as": "food"})
    assert _curriculum(config) == (0.2, 0.7, 20, 61)


def test_food_fmlprec_gets_the_authors_food_settings() -> None:
    config = resolve_config("beauty", "fmlprec", "faerec", overrides={"data.preset_as": "food"})
    assert _curriculum(config) == (0.2, 0.3, 30, 61)


def test_food_lrurec_gets_our_documented_choice() -> None:
    config = resolve_config("beauty", "lrurec", "faerec", overrides={"data.preset_as": "food"})
    assert _curriculum(config) == (0.2, 0.3, 25, 51)


def test_yelp_fmlprec_keeps_its_smaller_alignment_weight() -> None:
    assert _curriculum(resolve_config("yelp", "fmlprec", "faerec")) == (0.1, 0.3, 30, 61)


def test_gru4rec_takes_the_sasrec_row_of_its_dataset() -> None:
    config = resolve_config("yelp", "gru4rec", "faerec")
    assert _curriculum(config) == _curriculum(resolve_config("yelp", "sasrec", "faerec"))


# --- where preset_as comes from ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("dataset", "expected"), [("beauty", "beauty"), ("yelp", "yelp"), ("ml-100k", "generic")]
)
def test_bundled_datasets_declare_theirs(dataset: str, expected: str) -> None:
    assert resolve_config(dataset, "sasrec", "faerec").data.preset_as == expected


def test_dataset_json_declares_the_preset(tmp_path: Path) -> None:
    folder = _folder(tmp_path, {"preset_as": "food"})
    config = resolve_config(str(folder), "sasrec", "faerec")
    assert config.data.preset_as == "food"
    assert _curriculum(config) == (0.2, 0.7, 20, 61)


def test_a_folder_without_preset_as_gets_the_generic_settings(tmp_path: Path) -> None:
    config = resolve_config(str(_folder(tmp_path, None)), "sasrec", "faerec")
    assert config.data.preset_as == ""
    assert _curriculum(config) == (0.2, 0.9, 30, 61)


def test_generic_fallback_is_announced_in_one_line(tmp_path: Path) -> None:
    config = resolve_config(str(_folder(tmp_path, None)), "sasrec", "faerec")
    notice = preset_notice(config, "official")
    assert notice is not None and "declares no preset_as" in notice and "\n" not in notice


def test_a_declared_preset_is_not_announced(tmp_path: Path) -> None:
    config = resolve_config(str(_folder(tmp_path, {"preset_as": "generic"})), "sasrec", "faerec")
    assert preset_notice(config, "official") is None


def test_plain_backbone_needs_no_announcement(tmp_path: Path) -> None:
    config = resolve_config(str(_folder(tmp_path, None)), "sasrec", "backbone")
    assert preset_notice(config, "official") is None


def test_set_overrides_the_dataset_declaration(tmp_path: Path) -> None:
    folder = _folder(tmp_path, {"preset_as": "food"})
    config = resolve_config(str(folder), "sasrec", "faerec", overrides={"data.preset_as": "yelp"})
    assert _curriculum(config) == (0.2, 0.3, 25, 51)


def test_a_study_fixed_override_sets_it_too(tmp_path: Path) -> None:
    """A study's ``fixed:`` goes through the same overrides as ``--set``."""
    config, sources = resolve_with_sources(
        "ml-100k", "sasrec", "faerec", overrides={"data.preset_as": "food"}, override_source="spec"
    )
    assert config.faerec.w_min == 0.7
    assert sources["data.preset_as"] == "spec"


def test_bad_preset_as_in_dataset_json_names_the_file_and_line(tmp_path: Path) -> None:
    folder = _folder(tmp_path, {"preset_as": "fashion"})
    with pytest.raises(DataError, match=r"dataset\.json:\d+: 'preset_as': expected one of beauty"):
        resolve_config(str(folder), "sasrec", "faerec")


def test_bad_preset_as_override_is_refused() -> None:
    with pytest.raises(ConfigError, match="data.preset_as: expected one of beauty, yelp, food"):
        resolve_config("beauty", "sasrec", "faerec", overrides={"data.preset_as": "fashion"})


def test_the_loader_accepts_preset_as(tmp_path: Path) -> None:
    assert load_dataset(_folder(tmp_path, {"preset_as": "food"})).num_users == 2


def test_preset_none_ignores_preset_as() -> None:
    food = resolve_config("beauty", "sasrec", "faerec", "none", {"data.preset_as": "food"})
    assert _curriculum(food) == _curriculum(resolve_config("beauty", "sasrec", "faerec", "none"))


def test_plain_backbone_preset_does_not_depend_on_the_dataset() -> None:
    food = resolve_config("beauty", "sasrec", "backbone", overrides={"data.preset_as": "food"})
    beauty = resolve_config("beauty", "sasrec", "backbone")
    food.data.preset_as = beauty.data.preset_as
    assert food == beauty


def test_every_preset_as_resolves_for_every_backbone_and_method() -> None:
    for preset_as in PRESET_AS:
        for backbone in BACKBONES:
            for method in METHODS:
                resolve_config("beauty", backbone, method, overrides={"data.preset_as": preset_as})


# --- prepare writes it -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reviews", "meta", "expected"),
    [
        ("reviews_Beauty_5.json.gz", "meta_Beauty.json.gz", "beauty"),
        ("Grocery_and_Gourmet_Food.json", "meta_Grocery_and_Gourmet_Food.json", "food"),
        ("reviews_Toys_and_Games.json.gz", "meta_Toys_and_Games.json.gz", "generic"),
        ("dump.json", "meta_Beauty.json", "beauty"),
    ],
)
def test_amazon_preset_follows_the_category(reviews: str, meta: str, expected: str) -> None:
    assert amazon_preset_as(Path(reviews), Path(meta)) == expected


def _amazon_dump(tmp_path: Path, category: str) -> list[str]:
    reviews = tmp_path / f"{category}.json"
    reviews.write_text(
        "".join(
            json.dumps({"reviewerID": user, "asin": item, "unixReviewTime": time}) + "\n"
            for user, item, time in [("A", "X", 1), ("A", "Y", 2), ("B", "X", 3), ("B", "Y", 4)]
        ),
        encoding="utf-8",
    )
    meta = tmp_path / f"meta_{category}.json"
    meta.write_text('{"asin": "X", "title": "Tea"}\n', encoding="utf-8")
    return ["--reviews", str(reviews), "--meta", str(meta), "--user-core", "1", "--item-core", "1"]


def test_prepare_food_dump_writes_preset_food(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "food"
    argv = ["prepare", "amazon", *_amazon_dump(tmp_path, "Grocery_and_Gourmet_Food")]
    assert main([*argv, "--out", str(out)]) == 0
    assert json.loads((out / "dataset.json").read_text())["preset_as"] == "food"
    assert "preset_as food" in capsys.readouterr().out


def test_prepare_flag_overrides_the_category(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    argv = ["prepare", "amazon", *_amazon_dump(tmp_path, "Beauty"), "--preset-as", "generic"]
    assert main([*argv, "--out", str(out)]) == 0
    assert resolve_config(str(out), "sasrec", "faerec").data.preset_as == "generic"


# --- faerec-study config -----------------------------------------------------------------------


def _config_output(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["config", *argv]) == 0
    return capsys.readouterr().out


def test_config_command_prints_the_resolved_configuration_as_yaml(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = _config_output(
        ["--dataset", "yelp", "--method", "faerec", "--set", "train.max_epochs=7"], capsys
    )
    expected = resolve_config("yelp", "sasrec", "faerec", overrides={"train.max_epochs": 7})
    assert yaml.safe_load(out) == expected.to_dict()


def test_config_command_names_the_source_of_each_set_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _folder(tmp_path, {"preset_as": "food"})
    out = _config_output(
        ["--dataset", str(folder), "--method", "faerec", "--set", "train.max_epochs=7"], capsys
    )
    lines = {line.split(":")[0].strip(): line for line in out.splitlines()}
    assert lines["w_min"].endswith("# preset official (food, sasrec, faerec)")
    assert lines["max_epochs"].endswith("# --set")
    assert lines["preset_as"].endswith(f"# {folder / 'dataset.json'}")
    assert lines["enabled"].endswith("# --method")
    assert "#" not in lines["tau"]  # left at its default


# --- patience against the cosine curriculum ---------------------------------------------------


def _yelp_faerec(**overrides: object) -> RunConfig:
    """Yelp x SASRec at its official FAERec preset: cosine curriculum, w_min 0.3, period 25."""
    return resolve_config(
        "yelp", "sasrec", "faerec", overrides={"train.max_epochs": 200, **overrides}
    )


def test_patience_shorter_than_the_curriculum_period_is_announced() -> None:
    notice = curriculum_notice(_yelp_faerec(**{"train.patience": 10}))
    assert notice is not None and "\n" not in notice
    assert "waits 10 epochs" in notice and "period of 25" in notice


def test_patience_counts_in_epochs_between_validations() -> None:
    # 5 validations, every 5 epochs: early stopping waits 25 epochs, a whole period
    config = _yelp_faerec(**{"train.patience": 5, "train.eval_every": 5})
    assert curriculum_notice(config) is None
    assert curriculum_notice(_yelp_faerec(**{"train.patience": 5, "train.eval_every": 4}))


def test_patience_of_a_whole_period_is_not_announced() -> None:
    assert curriculum_notice(_yelp_faerec(**{"train.patience": 25})) is None


@pytest.mark.parametrize(
    "overrides",
    [
        {"method": "backbone"},
        {"faerec.curriculum": "constant"},
        {"faerec.w_min": 1.0},  # w_min = w_max: the weights never move
        {"train.max_epochs": 25},  # the budget ends the run within one period anyway
        {"train.eval_start_epoch": 180},  # ... of its first validation
    ],
)
def test_no_announcement_without_a_moving_curriculum_to_wait_for(
    overrides: dict[str, object],
) -> None:
    if overrides.get("method") == "backbone":
        config = resolve_config("yelp", "sasrec", "backbone", overrides={"train.max_epochs": 200})
    else:
        config = _yelp_faerec(**{"train.patience": 10, **overrides})
    assert curriculum_notice(config) is None


def test_config_command_shows_the_patience_note(capsys: pytest.CaptureFixture[str]) -> None:
    out = _config_output(
        ["--dataset", "yelp", "--method", "faerec", "--set", "train.max_epochs=200"], capsys
    )  # official validation starts at epoch 51 (0-based): 149 validated epochs, period 25
    assert "# note: early stopping waits 10 epochs" in out


def test_config_command_shows_the_generic_fallback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _config_output(["--dataset", str(_folder(tmp_path, None)), "--method", "faerec"], capsys)
    assert "# note: dataset" in out and "declares no preset_as" in out


def test_config_command_refuses_an_unknown_dataset_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["config", "--dataset", "no-such-data"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


# --- the authors' plain LRURec init ------------------------------------------------------------


def test_plain_lrurec_preset_uses_the_authors_plain_init() -> None:
    assert resolve_config("beauty", "lrurec", "backbone").model.truncated_init is False


def test_faerec_lrurec_preset_keeps_the_truncated_init() -> None:
    assert resolve_config("beauty", "lrurec", "faerec").model.truncated_init is True


def _lrurec(truncated: bool) -> torch.nn.Module:
    from faerec.models.backbones import build_backbone

    torch.manual_seed(0)
    config = resolve_config(overrides={"model.truncated_init": truncated}).model
    config.backbone = "lrurec"
    return build_backbone(config, num_items=500, max_len=50).requires_grad_(False)


def _largest(model: torch.nn.Module, name: str) -> float:
    return float(model.get_parameter(name).abs().max())


def test_untruncated_init_cuts_only_the_lru_projections() -> None:
    model = _lrurec(truncated=False)
    cut = 2 * 0.02 + 1e-7
    assert _largest(model, "item_embedding.weight") > cut
    assert _largest(model, "blocks.0.feed_forward.expand.weight") > cut
    assert _largest(model, "blocks.0.recurrence.input_projection.weight") <= cut
    assert _largest(model, "blocks.0.recurrence.output_projection.weight") <= cut


def test_truncated_init_cuts_every_weight() -> None:
    model = _lrurec(truncated=True)
    cut = 2 * 0.02 + 1e-7
    assert _largest(model, "item_embedding.weight") <= cut
    assert _largest(model, "blocks.0.feed_forward.expand.weight") <= cut


# --- faerec-study config --spec ----------------------------------------------------------------

STUDY = """\
name: presets-check
datasets: [data]
backbones: [sasrec]
methods: [faerec]
fixed:
  train.max_epochs: 7
  train.eval_start_epoch: 0
  data.preset_as: food
"""


def test_config_spec_resolves_a_cell_as_the_study_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _folder(tmp_path, None)
    (tmp_path / "study.yaml").write_text(STUDY, encoding="utf-8")
    out = _config_output(["--spec", str(tmp_path / "study.yaml"), "--set", "train.seed=7"], capsys)
    lines = {line.split(":")[0].strip(): line for line in out.splitlines()}
    assert lines["max_epochs"].endswith("# spec fixed")
    assert lines["preset_as"].endswith("# spec fixed")
    assert lines["w_min"].endswith("# preset official (food, sasrec, faerec)")
    assert lines["seed"].endswith("# --set")
    assert "# cell data__sasrec__faerec of" in out


def test_config_spec_refuses_an_unknown_cell(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _folder(tmp_path, None)
    (tmp_path / "study.yaml").write_text(STUDY, encoding="utf-8")
    assert main(["config", "--spec", str(tmp_path / "study.yaml"), "--cell", "nope"]) == 2
    assert "no cell 'nope'" in capsys.readouterr().err


def test_study_validate_announces_the_generic_fallback_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _folder(tmp_path, None)
    spec = STUDY.replace("  data.preset_as: food\n", "").replace(
        "[faerec]", "[faerec, faerec-no-gate]"
    )
    (tmp_path / "study.yaml").write_text(spec, encoding="utf-8")
    assert main(["validate", str(tmp_path / "study.yaml")]) == 0
    assert capsys.readouterr().err.count("declares no preset_as") == 1
