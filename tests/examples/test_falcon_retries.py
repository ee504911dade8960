"""The falcon-7b README's "Retries and spot GPUs" against what substratus does with the example:
the trainer's settings, its estimate rows, the capacity warning it quotes, and the fields of the
state it shows (the planning is in memory: ``tests.estimate.scenarios``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from substratus.engine.address import Address
from substratus.engine.capacity import check_capacity, gpu_requests
from substratus.engine.config import load_config
from substratus.engine.render import render_plan
from substratus.engine.runtime import Capacity, NodeOffer
from substratus.engine.statefile import AttemptRecord, RunRecord
from tests.estimate import scenarios as sc
from tests.examples.test_falcon_preview import FALCON, section

TRAINER = "model.falcon-7b-k8s"


def _readme() -> str:
    return section((FALCON / "README.md").read_text(), "Retries and spot GPUs")


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


def _words(line: str) -> str:
    return " ".join(line.split())


def test_the_trainer_retries_on_spot_with_a_command() -> None:
    spec = load_config([str(FALCON)]).resources[Address.parse(TRAINER)].spec
    assert spec["retries"] == 3
    assert spec["container"]["command"] == ["train.sh"]  # so its pods get SUBSTRATUS_ATTEMPT
    assert spec["trainer"]["resources"]["spot"] is True


def test_the_estimate_lines_shown_are_the_plans(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    [shown] = _blocks(_readme(), "text")
    printed = {
        _words(line) for line in render_plan(sc.falcon(tmp_path, monkeypatch).plan()).splitlines()
    }
    lines = [_words(line) for line in shown.splitlines() if line.strip()]
    assert lines and all(line in printed for line in lines), (lines, printed)


def test_the_capacity_warning_quoted_is_the_one_a_cluster_without_spot_nodes_gets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = sc.falcon(tmp_path, monkeypatch).plan()
    on_demand = Capacity(offers=(NodeOffer("l4", "nvidia-l4", 8),))
    [warning] = [d for d in check_capacity(gpu_requests(plan), on_demand) if d.address == TRAINER]
    quoted = re.findall(r"warns\s+`([^`]*)`", _readme())
    assert quoted and warning.summary.startswith(_words(quoted[0])), (quoted, warning.summary)
    spot = Capacity(offers=(NodeOffer("l4-spot", "nvidia-l4", 8, spot=True),))
    assert [d for d in check_capacity(gpu_requests(plan), spot) if d.address == TRAINER] == []


def test_the_state_fields_shown_are_the_run_records() -> None:
    [shown] = _blocks(_readme(), "json")
    fields = json.loads("{" + shown.replace("…", "") + "}")
    run = RunRecord.model_validate(
        {"started_at": "", "finished_at": "", "outcome": "succeeded", "seconds": 1.0, **fields}
    )
    assert run.attempts == 2 and run.failed_attempts is not None
    assert set(fields["failed_attempts"][0]) <= set(AttemptRecord.model_fields)


@pytest.mark.parametrize(
    ("old", "new", "trains_again"),
    [
        ("      spot: true\n", "", True),
        ("command: [train.sh]", "command: [train2.sh]", True),
        ("  retries: 3\n", "  retries: 1\n", False),
    ],
)
def test_spot_and_command_are_content_retries_is_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, old: str, new: str, trains_again: bool
) -> None:
    """What the README says a change of each does to an applied example."""
    plan = sc.replan(sc.applied(sc.falcon(tmp_path, monkeypatch)), old, new)
    runs = {str(c.address): c.action.value for c in plan.runs()}
    if trains_again:  # the trainer again, and the server of the model it makes
        assert runs == {TRAINER: "replace", "modelserver.falcon-7b-k8s": "update"}, runs
    else:
        assert runs == {}, runs
        [change] = [c for c in plan.changes() if str(c.address) == TRAINER]
        assert change.record_only
