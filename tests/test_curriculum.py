"""Curriculum weights: the official cosine (golden), our linear ramp and the constant split."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from faerec.config import FAERecConfig
from faerec.models.curriculum import curriculum_weights

GOLDEN = Path(__file__).parent / "golden" / "curriculum.json"


def _settings() -> list[dict[str, Any]]:
    return json.loads(GOLDEN.read_text())  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "setting", _settings(), ids=lambda s: f"wmin{s['w_min']}-P{s['period']}-W{s['warmup']}"
)
def test_cosine_matches_official_golden(setting: dict[str, Any]) -> None:
    config = FAERecConfig(
        curriculum="cosine",
        w_min=setting["w_min"],
        w_max=setting["w_max"],
        period=setting["period"],
        warmup=setting["warmup"],
    )
    for epoch, (item, feature) in enumerate(
        zip(setting["item_weight"], setting["feature_weight"], strict=True)
    ):
        w_item, w_feat = curriculum_weights(config, epoch)
        assert w_item == pytest.approx(item, rel=1e-9, abs=1e-12)
        assert w_feat == pytest.approx(feature, rel=1e-9, abs=1e-12)


def test_linear_ramp_by_hand() -> None:
    config = FAERecConfig(curriculum="linear", w_min=0.4, w_max=1.0, ramp_epochs=4, warmup=2)
    # warm-up (1, 0); then 1.0 -> 0.4 in 4 steps of 0.15; then held at w_min
    expected_item = [1.0, 1.0, 1.0, 0.85, 0.7, 0.55, 0.4, 0.4, 0.4]
    for epoch, item in enumerate(expected_item):
        w_item, w_feat = curriculum_weights(config, epoch)
        assert w_item == pytest.approx(item)
        assert w_feat == pytest.approx(1.0 - item)


def test_linear_ramp_is_monotone_and_starts_below_one_when_w_max_is_lower() -> None:
    config = FAERecConfig(curriculum="linear", w_min=0.2, w_max=0.8, ramp_epochs=7, warmup=0)
    items = [curriculum_weights(config, epoch)[0] for epoch in range(20)]
    assert items[0] == pytest.approx(0.8)
    assert items[-1] == pytest.approx(0.2)
    assert all(later <= earlier for earlier, later in zip(items, items[1:], strict=False))


def test_constant_by_hand() -> None:
    config = FAERecConfig(curriculum="constant", constant_item_weight=0.3, warmup=5)
    for epoch in (0, 4, 5, 99):
        assert curriculum_weights(config, epoch) == pytest.approx((0.3, 0.7))


def test_ablation_flags_do_not_change_the_weights() -> None:
    plain = FAERecConfig(curriculum="cosine", w_min=0.7, period=20)
    no_feature = FAERecConfig(curriculum="cosine", w_min=0.7, period=20, feature_align=False)
    assert curriculum_weights(plain, 5) == curriculum_weights(no_feature, 5)
