"""The report's one document model and its paper table, across cells and studies.

Stores are written through the store's fixture writers (tests/report_fixtures.py): three
studies, so that the headline table has two datasets and two backbones, a searched FAERec with
its retrained preset, a FAERec at its preset, and final runs of which some did not converge.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from report_fixtures import SimulatedData, make_study_store, simulated_run
from scipy.stats import ttest_rel

from faerec.atomic import write_json_atomic
from faerec.cli import main as cli_main
from faerec.config import flatten
from faerec.report import build_report
from faerec.report.document import (
    MARK_NOT_CONVERGED,
    Document,
    Table,
    build_document,
)
from faerec.report.load import load_study
from faerec.report.stats import format_p
from faerec.report.tables import (
    build_model,
    convergence_note,
    fmt_change,
    fmt_param,
    study_wall_seconds,
)
from faerec.results import EpochReport, RunResult
from faerec.study.store import CellStore, count_trials


def _add_reference_seeds(study: Path, cell_id: str, seeds: tuple[int, ...]) -> None:
    """The searched cell's preset retrained (final/reference_seed_<s>.json), as the engine
    writes it; simulated with other ranks than the tuned runs."""
    data = SimulatedData()
    dataset, backbone, _ = cell_id.split("__")
    for seed in seeds:
        run = simulated_run(data, dataset, backbone, "faerec-no-curriculum", seed)
        write_json_atomic(CellStore(study / "cells" / cell_id).reference_json(seed), run.to_dict())


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """ml-100k x SASRec (searched FAERec + its preset), ml-100k x LRURec (FAERec preset),
    Beauty x SASRec (no FAERec search); every backbone run stopped early, FAERec's did not."""
    root = tmp_path_factory.mktemp("studies")
    searched = make_study_store(
        root,
        "ml-sasrec",
        methods=("backbone", "faerec"),
        searched=("faerec",),
        n_trials=8,
        converged=("backbone",),
    )
    _add_reference_seeds(searched, "ml-100k__sasrec__faerec", (2024, 2025))
    lrurec = make_study_store(
        root,
        "ml-lrurec",
        backbone="lrurec",
        methods=("backbone", "faerec"),
        searched=(),
        converged=("backbone",),
    )
    beauty = make_study_store(
        root,
        "beauty-sasrec",
        dataset="beauty",
        methods=("backbone", "faerec"),
        searched=(),
        converged=("backbone",),
    )
    write_json_atomic(  # stopped once (killed: no end), resumed the next day
        beauty / "sessions.json",
        [
            {"started": "2026-12-01T10:00:00+00:00", "last_seen": "2026-12-01T10:30:00+00:00"},
            {
                "started": "2026-12-02T10:00:00+00:00",
                "last_seen": "2026-12-02T11:00:00+00:00",
                "ended": "2026-12-02T11:00:00+00:00",
                "outcome": "finished",
            },
        ],
    )
    return [searched, lrurec, beauty]


@pytest.fixture(scope="module")
def document(studies: list[Path]) -> Document:
    model = build_model([load_study(p) for p in studies])
    return build_document(model, {})


@pytest.fixture(scope="module")
def report(studies: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The end-to-end CLI run: ``faerec-study report A B C --output DIR``."""
    out = tmp_path_factory.mktemp("reports") / "paper"
    code = cli_main(
        ["report", *map(str, studies), "--output", str(out), "--format", "md,html,csv,tex"]
    )
    assert code == 0
    return out


def _table(document: Document, kind: str, key: str | None = None) -> Table:
    return next(t for t in document.tables() if t.kind == kind and (key is None or t.key == key))


def _headline_rows(document: Document) -> list[tuple[str, str]]:
    return [(r.cells[0].value, r.cells[1].value) for r in _table(document, "headline").rows]


# --- the headline table ---------------------------------------------------------------------


def test_headline_rows_are_dataset_by_backbone_defaults_tuned(document: Document) -> None:
    assert _headline_rows(document) == [
        ("ML-100K", "Backbone"),
        ("", "FAERec, paper defaults"),
        ("", "FAERec, tuned"),
        ("Beauty", "Backbone"),
        ("", "FAERec, paper defaults"),
    ]


def test_headline_has_a_column_group_per_backbone(document: Document) -> None:
    table = _table(document, "headline")
    assert [(s.label, s.span) for s in table.spans[0]] == [("", 2), ("SASRec", 6), ("LRURec", 6)]
    assert [s.label for s in table.spans[1][1:4]] == ["Overall", "Head items", "Tail items"]
    assert table.header[2:8] == ["NDCG@10", "HR@10"] * 3


def test_headline_shows_a_dash_where_a_backbone_has_no_such_row(document: Document) -> None:
    table = _table(document, "headline")
    tuned = next(r for r in table.rows if r.cells[1].value == "FAERec, tuned")
    assert [c.value for c in tuned.cells[8:14]] == ["\u2013"] * 6  # LRURec was not searched


def test_headline_bolds_the_best_value_per_column_within_a_dataset(document: Document) -> None:
    table = _table(document, "headline")
    ml_rows = table.rows[:3]
    for column in range(2, 8):
        values = [float(r.cells[column].value) for r in ml_rows]
        strong = [r.cells[column].strong for r in ml_rows]
        assert strong == [v == max(values) for v in values]


def test_headline_value_is_the_mean_and_spread_over_seeds(document: Document, report: Path) -> None:
    tidy = pd.read_csv(report / "results.csv")
    pick = tidy[
        (tidy.study == "ml-sasrec")
        & (tidy.method == "backbone")
        & (tidy.split == "test")
        & (tidy.group == "tail_items")
        & (tidy.metric == "ndcg")
        & (tidy.k == 10)
    ]["value"]
    cell = _table(document, "headline").rows[0].cells[6]  # SASRec, tail items, NDCG@10
    assert cell.value == f"{pick.mean():.4f}" and cell.spread == f"{pick.std():.4f}"


def _overall_ndcg10(report: Path, study: str, method: str) -> pd.Series:
    tidy = pd.read_csv(report / "results.csv")
    return tidy[
        (tidy.study == study)
        & (tidy.method == method)
        & (tidy.split == "test")
        & (tidy.group == "overall")
        & (tidy.metric == "ndcg")
        & (tidy.k == 10)
    ].set_index("seed")["value"]


def test_gains_table_has_a_row_per_faerec_row_of_each_dataset_and_backbone(
    document: Document,
) -> None:
    table = _table(document, "gains")
    assert [tuple(c.value for c in r.cells[:3]) for r in table.rows] == [
        ("ML-100K", "SASRec", "FAERec, paper defaults"),
        ("ML-100K", "SASRec", "FAERec, tuned"),
        ("ML-100K", "LRURec", "FAERec, paper defaults"),
        ("Beauty", "SASRec", "FAERec, paper defaults"),
    ]
    assert [s.label for s in table.spans[0][1:]] == [
        "Overall, NDCG@10",
        "Head items, NDCG@10",
        "Tail items, NDCG@10",
        "Epochs, by seed",
        "Time per run",
    ]


def test_gains_are_the_change_of_the_mean_and_a_paired_t_test_over_seeds(
    document: Document, report: Path
) -> None:
    backbone = _overall_ndcg10(report, "ml-lrurec", "backbone")
    faerec = _overall_ndcg10(report, "ml-lrurec", "faerec")
    row = next(r for r in _table(document, "gains").rows if r.cells[1].value == "LRURec")
    assert row.cells[3].value == fmt_change(faerec.mean() / backbone.mean() - 1)
    assert row.cells[4].value == format_p(ttest_rel(faerec, backbone[faerec.index]).pvalue)
    assert row.cells[5].value  # the per-user test ran


def test_gains_give_each_final_runs_epochs_and_flag_the_unconverged(
    document: Document, studies: list[Path]
) -> None:
    row = next(r for r in _table(document, "gains").rows if r.cells[1].value == "LRURec")
    cells = {
        c: CellStore(studies[1] / "cells" / f"ml-100k__lrurec__{c}") for c in ("backbone", "faerec")
    }
    epochs = {
        c: " / ".join(str(r.epochs_trained) for _, r in sorted(s.read_seeds().items()))
        for c, s in cells.items()
    }
    assert (row.cells[12].value, row.cells[13].value) == (epochs["backbone"], epochs["faerec"])
    assert (row.cells[12].notes, row.cells[13].notes) == ("", MARK_NOT_CONVERGED)


def test_a_report_of_one_dataset_and_backbone_has_no_gains_table(studies: list[Path]) -> None:
    document = build_document(build_model([load_study(studies[1])]), {})
    assert all(t.kind != "gains" for t in document.tables())


def test_every_format_shows_the_headline_numbers(document: Document, report: Path) -> None:
    values = {
        c.value
        for r in _table(document, "headline").rows
        for c in r.cells[2:]
        if c.value != "\u2013"
    }
    for name in ("report.md", "report.html", "report.tex"):
        text = (report / name).read_text()
        headline = text[: text.index("Protocol and data")] if name != "report.tex" else text
        assert {v for v in values if v not in headline} == set(), name


def test_html_first_screen_is_the_headline_table(report: Path) -> None:
    page = (report / "report.html").read_text()
    first_table = page.index("<table")
    assert page.index('data-kind="headline"') == page.index("data-kind=", first_table)
    assert first_table < page.index('<nav class="toc"') < page.index('id="protocol"')


def test_latex_headline_is_booktabs_with_a_group_per_backbone(report: Path) -> None:
    tex = (report / "report.tex").read_text()
    headline = tex[tex.index(r"\label{tab:headline}") :].split(r"\end{table}")[0]
    assert r"\multicolumn{6}{c}{SASRec} & \multicolumn{6}{c}{LRURec}" in headline
    assert r"\toprule" in headline and r"\bottomrule" in headline


def test_metrics_and_ks_choose_the_headline_columns(studies: list[Path]) -> None:
    model = build_model([load_study(p) for p in studies], ks=[20], metrics=["hr"])
    document = build_document(model, {})
    assert _table(document, "headline").header == ["Dataset", "Method"] + ["HR@20"] * 6
    seeds = _table(document, "seeds", "seeds-ml-sasrec-ml-100k__sasrec__faerec")
    assert seeds.header[-1] == "Test HR@20"


def test_unmeasured_metric_is_one_line_and_exit_2(
    studies: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli_main(
        ["report", str(studies[0]), "--output", str(tmp_path / "r"), "--metrics", "map"]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.strip().count("\n") == 0
    assert "--metrics: map not measured; these studies measured hr, ndcg" in err
    assert not (tmp_path / "r").exists()


# --- significance ---------------------------------------------------------------------------


def test_tail_items_get_a_per_user_test(document: Document) -> None:
    p_values = _table(document, "p-values", "p-main-ml-100k-sasrec")
    wilcoxon = next(r for r in p_values.rows if r.cells[1].value == "Wilcoxon (users)")
    tail = p_values.header.index("NDCG@10", 2 + 8)  # the tail items' NDCG@10
    assert p_values.spans[0][3].label == "Tail items"
    assert wilcoxon.cells[tail].value not in ("", "n/a")


def test_old_seed_files_say_the_per_user_test_predates_them(tmp_path: Path) -> None:
    store = make_study_store(
        tmp_path / "studies", "old", methods=("backbone", "faerec"), searched=(), real=True
    )
    build_report([store], tmp_path / "out", formats=["md"])
    md = (tmp_path / "out" / "report.md").read_text()
    assert "Head items, Tail items: per-user test n/a (seed files predate it)" in md


def test_t_tests_on_two_seeds_carry_a_note(document: Document) -> None:
    p_values = _table(document, "p-values", "p-main-ml-100k-sasrec")
    t_test = next(r for r in p_values.rows if r.cells[1].value == "t-test (seeds)")
    assert t_test.cells[-1].value == "2 seeds: fewer than 3, weak"


def test_tuned_is_tested_against_its_defaults(document: Document) -> None:
    p_values = _table(document, "p-values", "p-tuning-ml-100k-sasrec")
    assert "vs SASRec + FAERec, paper defaults" in p_values.caption
    assert [r.cells[1].value for r in p_values.rows] == ["t-test (seeds)", "Wilcoxon (users)"]


def test_validation_at_the_selected_epoch_is_tested_against_the_defaults_by_seed_only(
    document: Document, studies: list[Path]
) -> None:
    """What the search maximised, per method: the model-selection score (valid NDCG@20 here),
    with a t-test over seeds vs the defaults and no per-user test (runs keep test ranks only)."""
    table = _table(document, "validation", "validation-ml-100k-sasrec")
    assert table.header == ["Method", "NDCG@20", "HR@20"]
    assert [r.cells[0].value for r in table.rows if r.kind != "summary"] == [
        "SASRec",
        "SASRec + FAERec, paper defaults",
        "SASRec + FAERec",
    ]
    assert "optimistic" in table.caption and "Validation users" in table.caption
    (study,) = [load_study(p) for p in studies if p.name == "ml-sasrec"]
    tuned = next(c for c in study.cells if c.method == "faerec" and c.backbone == "sasrec")
    chosen = [
        g.values["ndcg@20"] for r in tuned.finals.values() for g in r.valid if g.group == "overall"
    ]
    mean = sum(chosen) / len(chosen)
    tuned_row = next(r for r in table.rows if r.cells[0].value == "SASRec + FAERec")
    assert tuned_row.cells[1].value.startswith(f"{mean:.4f}")
    p_values = _table(document, "p-values", "p-validation-ml-100k-sasrec")
    assert {r.cells[1].value for r in p_values.rows} == {"t-test (seeds)"}


def test_importances_on_fewer_than_ten_trials_carry_a_note(report: Path) -> None:
    md = (report / "report.md").read_text()
    assert "completed trials (fewer than 10: a rough guide only)" in md


# --- convergence ----------------------------------------------------------------------------


def _run(
    stop: str, best_epoch: int, validated: list[int], config: dict[str, Any] | None = None
) -> RunResult:
    history = [
        EpochReport(e, 1.0, {}, {"ndcg@10": 0.1} if e in validated else None, 0.1, 0, 1.0)
        for e in range(max(validated) + 1)
    ]
    return RunResult(
        config=config or {},
        best_epoch=best_epoch,
        best_value=0.1,
        select_metric="ndcg@10",
        epochs_trained=len(history),
        stop_reason=stop,
        valid=[],
        test=None,
        history=history,
        seconds=1.0,
    )


def test_a_run_stopped_by_max_epochs_is_not_converged() -> None:
    assert "stopped by max_epochs after 6 epochs" in convergence_note(
        _run("max_epochs", 2, [0, 1, 2, 3, 4, 5])
    )


def test_a_best_epoch_at_the_last_validated_epoch_is_not_converged() -> None:
    note = convergence_note(_run("hook", 4, [0, 2, 4]))
    assert note == "its best epoch (5) is its last validated epoch"


def test_an_early_stopped_run_past_its_best_epoch_is_converged() -> None:
    assert convergence_note(_run("early_stopping", 2, [0, 1, 2, 3, 4, 5])) == ""


def _cosine(period: int, w_min: float = 0.3) -> dict[str, Any]:
    faerec = {"enabled": True, "curriculum": "cosine", "period": period, "w_min": w_min}
    return {"faerec": faerec | {"w_max": 1.0, "align_weight": 0.2, "item_align": True}}


def test_early_stopping_within_a_curriculum_period_of_the_best_epoch_is_not_converged() -> None:
    # best epoch 4 (0-based 3), stopped 10 validations later, with a 25-epoch cosine cycle: the
    # curriculum had not come back round, and a longer run can climb again (Yelp, SASRec).
    note = convergence_note(_run("early_stopping", 3, list(range(14)), _cosine(25)))
    assert note == (
        "early stopping ended it 10 epochs after its best, within one curriculum period (25 epochs)"
    )


def test_early_stopping_a_full_curriculum_period_after_the_best_epoch_is_converged() -> None:
    assert convergence_note(_run("early_stopping", 3, list(range(29)), _cosine(25))) == ""


def test_a_curriculum_that_does_not_move_the_weights_never_flags_a_run() -> None:
    flat = _cosine(25, w_min=1.0)
    assert convergence_note(_run("early_stopping", 3, list(range(14)), flat)) == ""


def test_banner_lists_every_run_that_did_not_converge(document: Document) -> None:
    banner = document.banners[0]
    assert banner.title.startswith(f"Not converged ({MARK_NOT_CONVERGED} in the tables): 8 final")
    assert all("FAERec" in item for item in banner.items)  # the backbones stopped early
    assert any("paper defaults" in item and "seed 2025" in item for item in banner.items)


def test_not_converged_cells_carry_the_dagger(document: Document) -> None:
    rows = _table(document, "headline").rows
    assert {c.notes for c in rows[0].cells[2:]} == {""}  # backbone: converged
    assert {c.notes for c in rows[2].cells[2:8]} == {MARK_NOT_CONVERGED}  # tuned FAERec


@pytest.mark.parametrize("name", ["report.md", "report.html", "report.tex"])
def test_every_format_opens_with_the_not_converged_banner(report: Path, name: str) -> None:
    text = (report / name).read_text()
    banner = text.index("Not converged")
    assert banner < text.index("headline" if name != "report.md" else "Headline results")
    assert "ML-100K \u00b7 SASRec + FAERec" in text.replace(r"\textperiodcentered{}", "\u00b7")


# --- search details and cost ----------------------------------------------------------------


def test_best_parameters_stand_beside_the_preset(studies: list[Path], document: Document) -> None:
    table = _table(document, "params", "params-ml-sasrec-ml-100k__sasrec__faerec")
    assert table.header == ["Parameter", "Preset", "Best"]
    best = json.loads((studies[0] / "cells/ml-100k__sasrec__faerec/best.json").read_text())
    reference = json.loads(
        (studies[0] / "cells/ml-100k__sasrec__faerec/final/reference_seed_2024.json").read_text()
    )
    row = next(r for r in table.rows if r.cells[0].value == "train.lr")
    preset = flatten(reference["config"])["train.lr"]
    assert [c.value for c in row.cells[1:]] == [
        fmt_param(preset),
        fmt_param(best["params"]["train.lr"]),
    ]
    assert f"trial {best['trial']}" in table.caption


def test_cost_table_counts_trials_as_the_study_does(
    studies: list[Path], document: Document
) -> None:
    table = _table(document, "cost")
    trials = pd.read_csv(studies[0] / "cells/ml-100k__sasrec__faerec/trials.csv")
    counts = count_trials(trials.to_dict("records"))
    row = next(r for r in table.rows if r.cells[0].hint == "ml-sasrec/ml-100k__sasrec__faerec")
    assert [c.value for c in row.cells[2:5]] == [
        str(counts.complete),
        str(counts.pruned),
        str(counts.failed),
    ]
    assert row.cells[5].value == f"{trials['seconds'].sum() / 3600:,.2f}"
    assert row.cells[1].value == "cpu"


def test_cost_table_sums_the_final_runs(document: Document) -> None:
    table = _table(document, "cost")
    total = table.rows[-1]
    assert total.kind == "summary" and total.cells[0].value == "All cells"
    # 7 cells (the retrained preset is one) x 2 seeds x 9.6 s
    assert total.cells[7].value == "14" and total.cells[8].value == "2 min 14 s"
    assert not math.isnan(float(total.cells[5].value))


def test_cpu_hours_count_the_epochs_that_recorded_cpu_time(studies: list[Path]) -> None:
    model = build_model([load_study(studies[0])])
    cost = next(c for c in model.costs if c.cell_id == "ml-100k__sasrec__faerec")
    cell = next(c for c in load_study(studies[0]).cells if c.cell_id == cost.cell_id)
    final_epochs = sum(len(r.history) for r in cell.finals.values())
    assert (cost.cpu_epochs, cost.epochs) == (final_epochs, final_epochs + len(cell.epochs))
    assert cost.cpu_seconds == pytest.approx(1.5 * final_epochs)


def test_cpu_hours_say_which_share_of_the_epochs_recorded_them(document: Document) -> None:
    row = next(
        r
        for r in _table(document, "cost").rows
        if r.cells[0].hint == "ml-sasrec/ml-100k__sasrec__faerec"
    )
    assert re.fullmatch(r"0\.\d\d \(\d+ of \d+ epochs\)", row.cells[10].value)


def test_study_wall_time_comes_from_study_json(report: Path) -> None:
    md = (report / "report.md").read_text()
    assert "**Study wall time (ml-sasrec):** 1 h 30 min" in md


def test_a_snapshot_of_a_running_study_has_its_wall_time_to_the_last_sign_of_life(
    tmp_path: Path,
) -> None:
    root = make_study_store(tmp_path / "studies", "running", methods=("backbone",), searched=())
    meta = json.loads((root / "study.json").read_text())
    meta["updated"] = meta["created"]  # a running driver writes `updated` only when it stops
    write_json_atomic(root / "study.json", meta)
    created = datetime.fromisoformat(meta["created"])
    alive = {"started": meta["created"], "last_seen": str(created + timedelta(minutes=75))}
    write_json_atomic(root / "sessions.json", [alive])
    assert study_wall_seconds(load_study(root)) == 75 * 60


def test_study_running_time_sums_the_driver_sessions_without_the_pause(report: Path) -> None:
    md = (report / "report.md").read_text()
    assert "**Study running time (beauty-sasrec):** 1 h 30 min (2 driver sessions)" in md
    assert "Study running time (ml-sasrec)" not in md  # no sessions.json: not recorded


# --- escaping -------------------------------------------------------------------------------


def test_latex_escapes_strings_from_data(tmp_path: Path) -> None:
    store = make_study_store(
        tmp_path / "studies",
        "tex",
        methods=("backbone", "faerec"),
        searched=("faerec",),
        n_trials=3,
        extra_best_params={"faerec": {"note": "50% & $x_1 #2"}},
    )
    build_report([store], tmp_path / "out", formats=["tex"])
    tex = (tmp_path / "out" / "report.tex").read_text()
    assert r"50\% \& \$x\_1 \#2" in tex


def test_headline_orders_cut_offs_as_the_main_tables_do(studies: list[Path]) -> None:
    model = build_model([load_study(p) for p in studies], ks=[10, 20])
    document = build_document(model, {})
    main = _table(document, "main", "main-ml-100k-sasrec")
    assert _table(document, "headline").header[2:14] == main.header[1:]


@pytest.mark.parametrize("module", ["markdown", "html", "latex"])
def test_renderers_take_nothing_but_the_document(module: str) -> None:
    """A renderer that imported the numbers could compute or choose one; only the document
    (and the figure files, and latex's label slug) may reach it."""
    import ast

    import faerec.report

    source = (Path(faerec.report.__file__).parent / f"{module}.py").read_text()
    imported = {
        (node.module, alias.name)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("faerec")
        for alias in node.names
    }
    allowed_modules = {"faerec.report.document", "faerec.report.figures"}
    assert {i for i in imported if i[0] not in allowed_modules} <= {
        ("faerec.report.tables", "slug")
    }


def test_a_second_study_of_the_same_cells_is_named_not_hidden(tmp_path: Path) -> None:
    kwargs: dict = {"methods": ("backbone",), "searched": ()}
    first = make_study_store(tmp_path / "studies", "first", **kwargs)
    again = make_study_store(tmp_path / "studies", "again", **kwargs)
    model = build_model([load_study(first), load_study(again)])
    document = build_document(model, {})
    assert _headline_rows(document) == [("ML-100K", "Backbone")]
    assert any("left out: again/ml-100k__sasrec__backbone" in w for w in model.warnings)


def test_a_seed_whose_user_groups_do_not_match_its_ranks_is_set_aside(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = make_study_store(tmp_path / "studies", "short", methods=("backbone",), searched=())
    cell = CellStore(store / "cells" / "ml-100k__sasrec__backbone")
    payload = json.loads(cell.seed_json(2025).read_text())
    payload["test_user_group"] = payload["test_user_group"][:-1]
    cell.seed_json(2025).write_text(json.dumps(payload))
    assert list(cell.read_seeds()) == [2024]
    assert "test_user_group has 942 entries but test_ranks has 943" in capsys.readouterr().err
    assert [p.name.split(".json")[0] for p in cell.set_aside_seeds()] == ["seed_2025"]


def test_summary_csv_counts_the_seeds_that_did_not_converge(report: Path) -> None:
    summary = pd.read_csv(report / "summary.csv")
    counts = summary.groupby(["study", "method"])["not_converged_seeds"].unique()
    assert counts[("ml-sasrec", "backbone")].tolist() == [0]
    assert counts[("ml-sasrec", "faerec")].tolist() == [2]
    assert counts[("ml-sasrec", "faerec-defaults")].tolist() == [2]


def test_a_searched_backbone_row_says_it_is_tuned(tmp_path: Path) -> None:
    store = make_study_store(
        tmp_path / "studies", "tb", methods=("backbone",), searched=("backbone",), n_trials=3
    )
    document = build_document(build_model([load_study(store)]), {})
    assert "each backbone alone (its best configuration where it was searched)" in (
        _table(document, "headline").caption
    )
