"""A damaged state never silently drops completed work (DESIGN §12), end to end through the CLI.

After an apply, the base state file is damaged in several ways while its journal holds the
apply's writes. Every command that reads the state must then stop with one clear error naming
both files and the recovery command, change neither file, and run nothing; after the documented
recovery (`substratus state recover`) the plan is empty and still nothing runs again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import Project


def _files(p: Project) -> tuple[Path, Path, Path]:
    state = p.state_file
    return state, state.with_suffix(".journal"), state.with_name("default.json.backup")


def _append(data: bytes) -> Callable[[Project], None]:
    def damage(p: Project) -> None:
        with p.state_file.open("ab") as fh:
            fh.write(data)

    return damage


def _edit_a_field(p: Project) -> None:
    doc = json.loads(p.state_file.read_text())
    doc["resources"]["build.app"]["status"] = "tainted"
    p.state_file.write_text(json.dumps(doc, indent=2) + "\n")


def _restore_an_older_copy(p: Project) -> None:
    state, _, backup = _files(p)
    state.write_bytes(backup.read_bytes())  # the state before the last apply


DAMAGES = {
    "one-byte-appended": (_append(b"x"), "is corrupt, and its journal"),
    "newline-appended": (_append(b"\n"), "does not belong to the state"),
    "field-edited": (_edit_a_field, "does not belong to the state"),
    "older-copy-restored": (_restore_an_older_copy, "does not belong to the state"),
}


def _runs() -> list[str]:
    return Path(os.environ["RUNS_LOG"]).read_text().split()


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_state_stops_every_command_until_it_is_recovered(
    slow_project: Project, damage: str
) -> None:
    p = slow_project
    p.run("apply", "--auto-approve")
    if damage == "older-copy-restored":  # a second apply, so that the backup is older
        p.edit("substratus.yaml", "loader: {params: {sleep: 0}}", "loader: {params: {extra: 1}}")
        p.run("apply", "--auto-approve")
    state, journal, _ = _files(p)
    assert journal.exists()
    damage_it, what = DAMAGES[damage]
    damage_it(p)
    before = (state.read_bytes(), journal.read_bytes())
    runs = _runs()

    commands = (
        ["state", "list"],
        ["state", "pull"],
        ["plan"],
        ["apply", "--auto-approve"],
        ["destroy", "--auto-approve"],
        ["output"],
    )
    for command in commands:
        out = p.run(*command, check=1)
        err = out.stderr
        assert what in err, (command, err)
        assert str(state) in err and str(journal) in err, (command, err)
        assert "substratus state recover" in err and "Traceback" not in err, (command, err)
        assert "to add" not in out.stdout, (command, out.stdout)
        assert (state.read_bytes(), journal.read_bytes()) == before, command
    assert _runs() == runs

    recovered = p.run("state", "recover")
    assert "Rebuilt the state" in recovered.stdout
    assert state.with_name("default.json.damaged").read_bytes() == before[0]
    assert state.with_name("default.journal.damaged").read_bytes() == before[1]
    assert not journal.exists()
    listed = p.run("state", "list").stdout.split()
    assert listed == ["build.app", "dataset.data", "model.trained", "modelserver.api"]
    assert "No changes." in p.run("plan", "--detailed-exitcode").stdout
    assert "No changes." in p.run("apply", "--auto-approve").stdout
    assert _runs() == runs  # nothing ran again
    assert "reads correctly" in p.run("state", "recover").stdout  # and it is idempotent
