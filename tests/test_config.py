"""The run configuration: presets, overrides, type checks and round trips."""

from __future__ import annotations

import pytest

from faerec.config import (
    METHODS,
    RunConfig,
    all_keys,
    describe_keys,
    parse_set_arguments,
    resolve_config,
)
from faerec.errors import ConfigError


def test_official_faerec_preset_for_beauty_sasrec() -> None:
    config = resolve_config("beauty", "sasrec", "faerec")
    assert config.faerec.enabled
    assert (config.faerec.w_min, config.faerec.period, config.faerec.align_weight) == (0.9, 30, 0.2)
    assert config.model.hidden_dropout == 0.4
    # the official code validates when epoch > star_test = 60
    assert config.train.eval_start_epoch == 61


def test_official_plain_backbone_preset_uses_backbone_dropout() -> None:
    config = resolve_config("yelp", "lrurec", "backbone")
    assert not config.faerec.enabled
    assert config.model.hidden_dropout == 0.4
    assert config.train.eval_start_epoch == 101


def test_ablation_method_sets_its_flag() -> None:
    config = resolve_config("beauty", "sasrec", "faerec-no-feature")
    assert config.faerec.enabled and not config.faerec.feature_align


def test_overrides_are_coerced_from_strings() -> None:
    config = resolve_config(
        "beauty",
        "sasrec",
        "faerec",
        overrides=parse_set_arguments(
            [
                "train.max_epochs=20",
                "faerec.tau=0.1",
                "faerec.item_align=false",
                "eval.ks=5,10,20,50",
            ]
        ),
    )
    assert config.train.max_epochs == 20
    assert config.faerec.tau == 0.1
    assert config.faerec.item_align is False
    assert config.eval.ks == [5, 10, 20, 50]


def test_unknown_key_suggests_the_close_one() -> None:
    with pytest.raises(ConfigError, match="did you mean 'train.max_epochs'"):
        parse_set_arguments(["train.max_epoch=3"])


def test_wrong_type_names_key_and_expected_type() -> None:
    with pytest.raises(ConfigError, match="train.max_epochs: expected int, got 'many'"):
        resolve_config(overrides={"train.max_epochs": "many"})


def test_fractional_int_is_refused() -> None:
    with pytest.raises(ConfigError, match="train.batch_size: expected int"):
        resolve_config(overrides={"train.batch_size": 2.5})


def test_out_of_range_value_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"model.hidden_dropout: expected a value in \[0, 1\]"):
        resolve_config(overrides={"model.hidden_dropout": 1.5})


def test_select_metric_must_use_an_evaluated_cutoff() -> None:
    with pytest.raises(ConfigError, match="train.select_metric"):
        resolve_config(overrides={"train.select_metric": "ndcg@50"})


def test_unknown_method_is_refused() -> None:
    with pytest.raises(ConfigError, match="method: expected one of"):
        resolve_config(method="faerec-plus")


def test_round_trip_through_dict() -> None:
    config = resolve_config("ml-100k", "gru4rec", "faerec-no-split", overrides={"train.seed": 7})
    assert RunConfig.from_dict(config.to_dict()) == config


def test_every_key_is_documented() -> None:
    rows = describe_keys()
    assert [row[0] for row in rows] == all_keys()
    assert all(doc for *_, doc in rows)


def test_every_method_resolves_for_every_backbone() -> None:
    for method in METHODS:
        for backbone in ("sasrec", "fmlprec", "lrurec", "gru4rec"):
            resolve_config("beauty", backbone, method)


def test_configuration_reference_is_up_to_date() -> None:
    from pathlib import Path

    from faerec.config import keys_markdown

    reference = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
    assert reference.read_text() == keys_markdown(), (
        "run: python -m faerec.config > docs/configuration.md"
    )


def test_config_error_carries_the_key_it_is_about() -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_config(overrides={"model.hidden_dropout": 1.5})
    assert caught.value.key == "model.hidden_dropout"
    assert caught.value.detail == "expected a value in [0, 1], got 1.5"
    assert str(caught.value) == "model.hidden_dropout: expected a value in [0, 1], got 1.5"
