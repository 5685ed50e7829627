"""The study file's declaration (faerec/study/schema.py): what the checks, study.json and the
docs derive from it, and that deriving them changed nothing a stored study depends on."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

from faerec.study.schema import FinalSettings, StudyFile
from faerec.study.schema_docs import render_docs
from faerec.study.spec import IDENTITY_KEYS, SpecError, parse_spec, spec_from_dict, spec_hash

REPO = Path(__file__).resolve().parent.parent

#: spec_hash of each bundled spec, computed before the keys were declared in schema.py: a study
#: started from one of them must resume under any later version of the parser
PINNED_HASHES = {
    "beauty-sasrec-cpu.yaml": "2308ae15a3798b59",
    "beauty.yaml": "c99e6812c7b237f7",
    "breadth-beauty.yaml": "fc36bbea6e62fb05",
    "breadth-beauty-p30.yaml": "bd05bc45a9b1e9e6",
    "breadth-beauty-sasrec-p30.yaml": "fce9d5338667e26b",
    "breadth-yelp.yaml": "da17d5b030cc5384",
    "breadth-yelp-p30.yaml": "a033414961314813",
    "quick.yaml": "5da44d68055cfe95",
    "yelp.yaml": "416dc48913e7805e",
}

MINIMAL = """\
name: tiny
datasets: [ml-100k]
backbones: [sasrec]
methods: [backbone]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse_spec(path)
    return [str(p) for p in caught.value.problems]


@pytest.mark.parametrize("name", sorted(PINNED_HASHES))
def test_bundled_spec_hash_is_unchanged(name: str) -> None:
    spec = parse_spec(REPO / "search_spaces" / name)
    assert spec_hash(json.loads(json.dumps(spec.to_dict()))) == PINNED_HASHES[name], (
        f"the spec_hash of search_spaces/{name} changed: a study started from it would refuse "
        "to resume (if the spec file itself was edited, update PINNED_HASHES)"
    )


def test_docs_key_tables_are_up_to_date() -> None:
    docs = REPO / "docs" / "study-spec.md"
    text = docs.read_text(encoding="utf-8")
    assert "<!-- keys: top -->" in text
    assert render_docs(text) == text, "run: python -m faerec.study.schema_docs"


def test_docs_name_the_keys_whose_change_resume_refuses() -> None:
    text = (REPO / "docs" / "study-spec.md").read_text(encoding="utf-8")
    (row,) = [line for line in text.splitlines() if "| refused with exit code 2" in line]
    assert set(re.findall(r"`([^`]+)`", row.split(" | ")[0])) == set(IDENTITY_KEYS)


def test_stored_spec_holds_every_declared_key_with_its_default(tmp_path: Path) -> None:
    stored = parse_spec(write(tmp_path, MINIMAL)).to_dict()
    assert list(stored) == list(StudyFile.model_fields)
    assert stored["final"] == {"seeds": 5, "reference": True, "extend_max_epochs": 0}
    assert stored["resources"] == {"cpus_per_trial": 1.0, "gpus_per_trial": 0.0, "max_failures": 2}


def test_stored_scheduler_holds_the_keys_of_its_type_only(tmp_path: Path) -> None:
    spec = parse_spec(write(tmp_path, MINIMAL + "scheduler: {type: median, min_samples: 4}\n"))
    assert spec.to_dict()["scheduler"] == {"type": "median", "grace_epochs": 1, "min_samples": 4}
    assert spec.scheduler.min_samples == 4


def test_a_key_of_another_scheduler_type_is_unknown(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "scheduler: {type: none, grace_epochs: 5}\n")
    assert problems(path) == [
        f"{path}:5: scheduler.grace_epochs: unknown key; expected one of: type"
    ]


def test_a_declared_key_missing_from_study_json_takes_its_default(tmp_path: Path) -> None:
    stored = json.loads(json.dumps(parse_spec(write(tmp_path, MINIMAL)).to_dict()))
    del stored["final"]["reference"]  # e.g. a study.json written before the key existed
    again = spec_from_dict(stored, "study.json")
    assert again.final_reference is FinalSettings.model_fields["reference"].default is True


def test_a_repeated_list_item_points_at_the_repeat(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "report:\n  formats:\n    - md\n    - csv\n    - md\n")
    assert problems(path) == [f"{path}:9: report.formats[2]: 'md' is listed twice"]


def test_numbers_written_as_text_are_numbers(tmp_path: Path) -> None:
    # YAML 1.1 reads 5e-1 as text; a resource written that way is still a number
    spec = parse_spec(write(tmp_path, MINIMAL + "resources: {cpus_per_trial: 5e-1}\n"))
    assert spec.resources.cpus_per_trial == 0.5


def test_problems_come_in_the_declared_order_of_the_keys(tmp_path: Path) -> None:
    # resources is declared before final: the order of the docs, not of the file
    path = write(tmp_path, MINIMAL + "final: {seeds: 2.5}\nresources: {max_concurrent: true}\n")
    assert problems(path) == [
        f"{path}:6: resources.max_concurrent: expected an integer >= 1, got a boolean (True)",
        f"{path}:5: final.seeds: expected an integer >= 0, got float 2.5",
    ]
