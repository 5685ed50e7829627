"""A study kept in an Optuna database reports like one kept in per-cell journals."""

from __future__ import annotations

from pathlib import Path

from report_fixtures import make_study_store

from faerec.report.load import load_study
from faerec.report.tables import search_summary


def test_a_database_study_gets_importances_and_a_pareto_front(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    root = make_study_store(
        tmp_path / "studies",
        "db",
        methods=("backbone", "faerec", "faerec-no-gate"),
        searched=("faerec", "faerec-no-gate"),
        two_metric=("faerec-no-gate",),
        n_trials=8,
        storage_url=url,
    )
    assert not list(root.rglob("optuna.journal"))
    summaries = {c.method: search_summary(c) for c in load_study(root).cells if c.has_search}
    assert summaries["faerec"].importances
    assert summaries["faerec"].counts["COMPLETE"] > 0
    assert summaries["faerec-no-gate"].pareto
