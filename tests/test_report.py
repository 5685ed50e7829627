"""The report: files, tables, numbers, escaping, errors and the CLI, on a realistic store."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from report_fixtures import make_study_store

from faerec.cli import main as cli_main
from faerec.errors import ConfigError, DataError
from faerec.report import build_report
from faerec.results import TIDY_COLUMNS

XSS = "<script>alert(1)</script>"
XSS_DATASET = "ml<img src=x onerror=alert(2)>"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One study: backbone (preset), FAERec and one ablation (searched), two real seeds each."""
    return make_study_store(tmp_path_factory.mktemp("studies"), "demo", real=True)


@pytest.fixture(scope="module")
def report(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reports") / "demo"
    build_report(
        [store], out, formats=("md", "html", "csv", "tex"), command="faerec-study report demo"
    )
    return out


def _small_store(root: Path, name: str = "small", **kwargs: object) -> Path:
    """A store without searches (no Optuna work): fast, for error and CLI tests."""
    defaults: dict[str, object] = {"methods": ("backbone", "faerec"), "searched": ()}
    defaults.update(kwargs)
    return make_study_store(root, name, **defaults)  # type: ignore[arg-type]


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _tags(page: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags()
    parser.feed(page)
    return parser.tags


# --- files ----------------------------------------------------------------------------------


def test_report_writes_every_requested_file(report: Path) -> None:
    for name in ("report.md", "report.html", "results.csv", "summary.csv", "report.tex"):
        assert (report / name).stat().st_size > 0, name
    pngs = sorted(p.stem for p in (report / "figures").glob("*.png"))
    svgs = sorted(p.stem for p in (report / "figures").glob("*.svg"))
    assert pngs == svgs and len(pngs) >= 6
    assert not list(report.rglob("*.tmp"))


def test_only_requested_formats_are_written(store: Path, tmp_path: Path) -> None:
    written = build_report([store], tmp_path / "r", formats=["csv"])
    assert sorted(p.name for p in written) == ["results.csv", "summary.csv"]
    assert not (tmp_path / "r" / "figures").exists()


def test_results_csv_is_the_tidy_table_of_every_seed(report: Path, store: Path) -> None:
    tidy = pd.read_csv(report / "results.csv")
    assert list(tidy.columns) == list(TIDY_COLUMNS)
    assert set(tidy["method"]) == {"backbone", "faerec", "faerec-no-gate"}
    assert set(tidy["seed"]) == {2024, 2025}
    assert set(tidy["k"]) == {5, 10, 20}  # all cut-offs, not only the table's
    seed_file = store / "cells" / "ml-100k__sasrec__faerec" / "final" / "seed_2025.json"
    stored = json.loads(seed_file.read_text())
    overall = next(g for g in stored["test"] if g["group"] == "overall")
    row = tidy[
        (tidy.method == "faerec")
        & (tidy.seed == 2025)
        & (tidy.split == "test")
        & (tidy.group == "overall")
        & (tidy.metric == "ndcg")
        & (tidy.k == 10)
    ]
    assert row["value"].item() == pytest.approx(overall["values"]["ndcg@10"])


def test_summary_csv_relative_change_and_p_values(report: Path) -> None:
    tidy = pd.read_csv(report / "results.csv")
    summary = pd.read_csv(report / "summary.csv")
    pick = (
        (tidy.split == "test")
        & (tidy.group == "tail_items")
        & (tidy.metric == "ndcg")
        & (tidy.k == 20)
    )
    ours = tidy[pick & (tidy.method == "faerec")]["value"].mean()
    theirs = tidy[pick & (tidy.method == "backbone")]["value"].mean()
    row = summary[
        (summary.method == "faerec")
        & (summary.split == "test")
        & (summary.group == "tail_items")
        & (summary.metric == "ndcg")
        & (summary.k == 20)
    ]
    assert row["rel_change_vs_backbone"].item() == pytest.approx((ours - theirs) / theirs)
    assert 0.0 < row["p_ttest_seeds"].item() <= 1.0
    # the recorded real seed files predate test_user_group: no per-user test within tail items
    assert pd.isna(row["p_wilcoxon_users"].item())
    overall = summary[
        (summary.method == "faerec")
        & (summary.split == "test")
        & (summary.group == "overall")
        & (summary.metric == "ndcg")
        & (summary.k == 10)
    ]
    assert 0.0 < overall["p_wilcoxon_users"].item() <= 1.0


# --- content --------------------------------------------------------------------------------


def _main_table(page: str) -> str:
    match = re.search(
        r'<table class="results" id="table-\d+" data-kind="main">.*?</table>', page, re.S
    )
    assert match, "main table missing"
    return match.group(0)


def test_main_table_rows_are_backbone_faerec_then_ablations(report: Path) -> None:
    table = _main_table((report / "report.html").read_text())
    labels = re.findall(r'<td class="method"[^>]*><span class="v">([^<]+)</span>', table)
    assert labels == ["SASRec", "SASRec + FAERec", "FAERec w/o gate", "Improv. of FAERec"]
    headers = re.findall(r"<th(?: class=\"sep\")?>((?:HR|NDCG)@\d+)</th>", table)
    assert headers == ["NDCG@10", "HR@10", "NDCG@20", "HR@20"] * 3


def test_best_value_of_each_column_is_bold(report: Path) -> None:
    tidy = pd.read_csv(report / "results.csv")
    pick = (
        (tidy.split == "test")
        & (tidy.group == "tail_items")
        & (tidy.metric == "hr")
        & (tidy.k == 10)
    )
    means = tidy[pick].groupby("method")["value"].mean()
    best_method = means.idxmax()
    table = _main_table((report / "report.html").read_text())
    best_cells = re.findall(r'<td class="[^"]*best"><span class="v">([0-9.]+)</span>', table)
    assert f"{means[best_method]:.4f}" in best_cells
    md = (report / "report.md").read_text()
    assert f"**{means[best_method]:.4f}**" in md


def test_header_shows_protocol_versions_hash_and_commands(report: Path) -> None:
    page = (report / "report.html").read_text()
    for text in (
        "leave-one-out",
        "full ranking over all items",
        "top 20% of items",
        "sha256:9b1f0c3e7a52d4e8",
        "faerec-study run search_spaces/demo.yaml",
        "faerec-study report demo",
        "2024, 2025",
        "minilm",
        "optuna",
        "1,682",
    ):
        assert text in page, text


def test_each_searched_cell_shows_counts_best_config_and_importances(report: Path) -> None:
    page = (report / "report.html").read_text()
    assert re.search(r"8 trials of 8 planned: \d+ complete, \d+ pruned, 1 fail", page)
    assert "faerec.align_weight" in page and "PED-ANOVA" in page
    assert "none (preset configuration)" in page  # the backbone cell has no search
    figures = report / "figures"
    assert (figures / "history_demo_ml-100k__sasrec__faerec.png").exists()
    assert (figures / "importance_demo_ml-100k__sasrec__faerec.svg").exists()
    assert (figures / "training_demo_ml-100k__sasrec__faerec.png").exists()
    assert (figures / "buckets_ml-100k-sasrec.png").exists()


def test_markdown_references_existing_relative_png_figures(report: Path) -> None:
    md = (report / "report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert links and all(link.startswith("figures/") and link.endswith(".png") for link in links)
    assert all((report / link).exists() for link in links)
    # GitHub tables: a header row, then a rule row of the same width
    header = next(line for line in md.splitlines() if line.startswith("| Method | Overall NDCG@10"))
    rule = md.splitlines()[md.splitlines().index(header) + 1]
    assert header.count(" | ") == rule.count(" | ")


def test_html_is_self_contained(report: Path) -> None:
    page = (report / "report.html").read_text()
    tags = _tags(page)
    assert not [t for t, _ in tags if t in ("script", "link", "iframe", "object", "embed")]
    images = [a.get("src") or "" for t, a in tags if t == "img"]
    assert images and all(src.startswith("data:image/svg+xml;base64,") for src in images)
    hrefs = [a.get("href") or "" for t, a in tags if t == "a"]
    assert all(h.startswith("#") for h in hrefs)
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page


def test_latex_table_uses_booktabs_and_escapes(report: Path) -> None:
    tex = (report / "report.tex").read_text()
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    assert r"\multicolumn{4}{c}{Tail items}" in tex
    assert r"\textbf{" in tex and r"+" in tex and r"\%" in tex
    assert "\\begin{tabular}{l cccc cccc cccc}" in tex


def test_two_metric_search_draws_the_pareto_front(tmp_path: Path) -> None:
    store = make_study_store(
        tmp_path / "studies",
        "pareto",
        methods=("backbone", "faerec"),
        searched=("faerec",),
        two_metric=("faerec",),
        n_trials=6,
    )
    out = tmp_path / "report"
    build_report([store], out, formats=["html"])
    assert (out / "figures" / "pareto_pareto_ml-100k__sasrec__faerec.svg").exists()
    assert "Pareto front" in (out / "report.html").read_text()


def test_few_trials_give_a_note_instead_of_importances(tmp_path: Path) -> None:
    store = make_study_store(
        tmp_path / "studies",
        "few",
        methods=("backbone", "faerec"),
        searched=("faerec",),
        n_trials=2,
    )
    out = tmp_path / "report"
    build_report([store], out, formats=["md"])
    md = (out / "report.md").read_text()
    assert "too few completed trials for parameter importances" in md
    assert not (out / "figures" / "importance_few_ml-100k__sasrec__faerec.png").exists()


def test_search_without_journal_falls_back_to_trials_csv(tmp_path: Path) -> None:
    store = make_study_store(
        tmp_path / "studies",
        "nojournal",
        methods=("backbone", "faerec"),
        searched=("faerec",),
        n_trials=4,
    )
    (store / "cells" / "ml-100k__sasrec__faerec" / "optuna.journal").unlink()
    out = tmp_path / "report"
    build_report([store], out, formats=["md"])
    md = (out / "report.md").read_text()
    assert re.search(r"4 trials of 4 planned: \d+ complete", md)
    assert "parameter importances need the Optuna journal, which is missing" in md
    assert (out / "figures" / "history_nojournal_ml-100k__sasrec__faerec.png").exists()


def test_cells_evaluated_differently_are_flagged(tmp_path: Path) -> None:
    store = _small_store(
        tmp_path / "studies", method_overrides={"faerec": {"eval.masking": "clean"}}
    )
    build_report([store], tmp_path / "out", formats=["md"])
    md = (tmp_path / "out" / "report.md").read_text()
    assert "Check before comparing numbers" in md
    assert "Scoring of history / padding differs between cells" in md
    assert "clean (history and padding excluded) (ml-100k\\_\\_sasrec\\_\\_faerec)" in md


# --- escaping -------------------------------------------------------------------------------


def test_data_strings_are_escaped_in_html_and_markdown(tmp_path: Path) -> None:
    store = make_study_store(
        tmp_path / "studies",
        "xss",
        dataset=XSS_DATASET,
        methods=("backbone", "faerec"),
        searched=("faerec",),
        n_trials=4,
        description=f"Study {XSS} description",
        extra_best_params={"faerec": {"note": XSS}},
    )
    out = tmp_path / "report"
    build_report([store], out, formats=["md", "html"])
    page = (out / "report.html").read_text()
    assert "<script" not in page.lower()
    assert "onerror" not in [k for _, attrs in _tags(page) for k in attrs]
    assert [
        t for t, a in _tags(page) if t == "img" and not (a.get("src") or "").startswith("data:")
    ] == []
    assert "Study &lt;script&gt;alert(1)&lt;/script&gt; description" in page  # the description
    # the best-config value
    assert '<td><span class="v">&lt;script&gt;alert(1)&lt;/script&gt;</span></td>' in page
    assert "ml&lt;img src=x onerror=alert(2)&gt;" in page  # the dataset name
    for svg in (out / "figures").glob("*.svg"):  # standalone figure files carry no markup
        assert "onerror" not in svg.read_text(), svg.name
    md = (out / "report.md").read_text()
    assert "<script" not in md and "<img" not in md
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in md


# --- several studies ------------------------------------------------------------------------


def test_several_studies_make_one_report_with_a_headline_table(tmp_path: Path) -> None:
    first = _small_store(tmp_path / "studies", "on-ml", dataset="ml-100k")
    second = _small_store(tmp_path / "studies", "on-beauty", dataset="beauty")
    out = tmp_path / "combined"
    build_report([first, second], out, formats=["html", "csv"])
    page = (out / "report.html").read_text()
    assert page.count('data-kind="headline"') == 1
    assert "Results: ML-100K · SASRec" in page and "Results: Beauty · SASRec" in page
    tidy = pd.read_csv(out / "results.csv")
    assert set(tidy["study"]) == {"on-ml", "on-beauty"}


# --- errors ---------------------------------------------------------------------------------


def test_missing_study_folder_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such study folder"):
        build_report([tmp_path / "nope"], tmp_path / "out")


def test_folder_without_study_json_is_a_data_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no study.json"):
        build_report([tmp_path / "empty"], tmp_path / "out")


def test_malformed_study_json_names_file_and_line(tmp_path: Path) -> None:
    study = _small_store(tmp_path / "studies")
    (study / "study.json").write_text('{\n  "name": "small",\n  "cells": [,]\n}\n')
    with pytest.raises(DataError, match=r"study\.json:3: invalid JSON"):
        build_report([study], tmp_path / "out")


def test_cell_without_final_seeds_is_incomplete(tmp_path: Path) -> None:
    study = _small_store(tmp_path / "studies")
    final = study / "cells" / "ml-100k__sasrec__faerec" / "final"
    for path in final.iterdir():
        path.unlink()
    with pytest.raises(DataError, match="has no final results"):
        build_report([study], tmp_path / "out", formats=["csv"])


def test_partial_report_leaves_unfinished_cells_out_and_says_so(tmp_path: Path) -> None:
    study = _small_store(tmp_path / "studies")
    for path in (study / "cells" / "ml-100k__sasrec__faerec" / "final").iterdir():
        path.unlink()
    build_report([study], tmp_path / "out", formats=["md", "csv"], allow_incomplete=True)
    md = (tmp_path / "out" / "report.md").read_text()
    assert "cells without final results are left out: ml-100k\\_\\_sasrec\\_\\_faerec" in md
    assert set(pd.read_csv(tmp_path / "out" / "results.csv")["method"]) == {"backbone"}


def test_unknown_format_is_a_config_error(store: Path, tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match="--format: expected one of md, html, csv, tex, got 'pdf'"
    ):
        build_report([store], tmp_path / "out", formats=["pdf"])


# --- CLI ------------------------------------------------------------------------------------


def test_cli_report_writes_reports_dir_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _small_store(tmp_path / "studies", "cli")
    code = cli_main(
        [
            "report",
            "cli",
            "--studies-dir",
            str(tmp_path / "studies"),
            "--reports-dir",
            str(tmp_path / "reports"),
            "--format",
            "md,csv",
        ]
    )
    assert code == 0
    assert (tmp_path / "reports" / "cli" / "report.md").exists()
    assert "report written to" in capsys.readouterr().out
    md = (tmp_path / "reports" / "cli" / "report.md").read_text()
    assert "faerec-study report cli --studies-dir" in md  # the command that made it


def test_cli_combining_studies_needs_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli_main(["report", "a", "b", "--studies-dir", str(tmp_path)])
    assert code == 2
    assert "give --output DIR" in capsys.readouterr().err


def test_cli_missing_study_is_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli_main(["report", "ghost", "--studies-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().count("\n") == 0 and "ghost: no such study folder" in err
