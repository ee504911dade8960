"""Compatibility is kept, not assumed (issue #12): what substratus 0.1.0 left on disk, in a bucket
and in a saved plan (``tests/compat/v0.1.0``, made by ``make_fixtures.py`` with the real CLI)
still works with the code under test, through the CLI.

Every test copies its fixture into a temp dir first (the checked-in files are never touched) and
runs there, away from where the fixture was made: that directory no longer exists, so outputs
recorded under it are found through the local runtime's ``rebase``, as after a user moved their
project. "It ran" and "it did not run" are counted by the jobs themselves
(``tests.e2e.counting``), never read from our output.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from substratus.engine.statefile import DIGEST_FORMAT
from tests.e2e.conftest import Project, kill_leftovers
from tests.e2e.counting import runs
from tests.support.gcs import GcsServer

FIXTURES = Path(__file__).resolve().parent / "v0.1.0"
MADE = json.loads((FIXTURES / "made.json").read_text())
JOURNAL_OBJECT = re.compile(r"^(?P<ws>.+)\.journal/(?P<generation>\d+)/\d{12}\.json$")


@pytest.fixture
def where(tmp_path: Path) -> Iterator[Path]:
    """The test's temp dir; any process left running from it is killed afterwards."""
    yield tmp_path
    kill_leftovers(tmp_path)


def moved(case: str, tmp_path: Path) -> Project:
    """A copy of fixture ``case``'s project in ``tmp_path``, checked to be somewhere else than
    where it was made (which must not exist: else ``rebase`` rightly leaves outputs alone)."""
    made_at = Path(MADE[case]["root"])
    assert not made_at.exists(), f"{made_at} exists: the copy would not exercise a moved project"
    target = tmp_path / "moved" / "project"
    shutil.copytree(FIXTURES / case / "project", target, symlinks=True)
    return Project(target)


def files(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` with its bytes."""
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


def check_records(p: Project, case: str, env: dict[str, str]) -> None:
    """``state list``, ``state pull`` and ``state show`` print what 0.1.0 printed."""
    expected = FIXTURES / case / "expected"
    assert p.run("state", "list", env=env).stdout == (expected / "state-list.txt").read_text()
    assert p.run("state", "pull", env=env).stdout == (expected / "state-pull.json").read_text()
    for address in (expected / "state-list.txt").read_text().split():
        shown = p.run("state", "show", address, env=env).stdout
        assert shown == (expected / f"state-show-{address}.txt").read_text(), address


# -- the file backend ------------------------------------------------------------------------


KEYED = ("model.trained", "modelserver.api")  # the secret's resource and what is downstream


def assert_migrated(before: dict[str, Any], after: dict[str, Any]) -> None:
    """The one change the first apply makes to a 0.1.0 state: the sensitive param's unsalted
    fingerprint (``sha256:``) is recorded again salted (``scrypt:``, with the state's new salt),
    and the digests over its plain value — its resource's and, through it, the server's — are
    recorded keyed by that salt (``engine.digest``): record-only updates, one write each,
    every other field as it was."""
    assert "salt" not in before and isinstance(after.pop("salt"), str)
    assert after.pop("serial") == before.pop("serial") + len(KEYED)
    assert after.pop("substratus_version")
    before.pop("substratus_version")
    old = before["resources"]["model.trained"]["spec"]["trainer"]["params"]["api_key"]
    new = after["resources"]["model.trained"]["spec"]["trainer"]["params"]["api_key"]
    assert old["$sensitive"].startswith("sha256:") and new["$sensitive"].startswith("scrypt:")
    new["$sensitive"] = old["$sensitive"]
    for address in KEYED:
        was, now = before["resources"][address], after["resources"][address]
        assert now.pop("digest_format") == DIGEST_FORMAT and was.pop("digest_format", 1) < 3
        assert now.pop("digest") != was.pop("digest"), address
        assert now.pop("dependency_digests").keys() == was.pop("dependency_digests").keys()
    assert after == before


def test_file_state_with_its_journal_loads_unchanged(where: Path) -> None:
    """It loads as 0.1.0 wrote it; the first apply runs nothing and only rewrites the record of
    the sensitive param in the salted form (engine.sensitive), keeping a backup."""
    p = moved("file", where)
    state_dir = p.dir / ".substratus" / "state"
    assert (state_dir / "default.journal").read_bytes().count(b"\n") > 1  # an unfolded journal
    before = files(state_dir)
    env = {"RUNS_LOG": str(where / "runs.log")}

    plan = p.run("plan", "--detailed-exitcode", env=env, check=2)
    assert "Plan: 0 to add, 2 to change, 0 to destroy." in plan.stdout
    for address in KEYED:
        assert f"{address} will be updated in-place (record only: nothing runs)" in plan.stdout
    assert files(state_dir) == before  # planning writes nothing
    check_records(p, "file", env)
    pulled = json.loads(p.run("state", "pull").stdout)
    pulled_serial = pulled["serial"]
    p.run("apply", "--auto-approve", env=env)

    assert runs(where / "runs.log") == {}  # nothing ran again
    assert_migrated(pulled, json.loads(p.run("state", "pull").stdout))
    backup = json.loads((state_dir / "default.json.backup").read_text())
    assert backup["serial"] == pulled_serial  # the state as 0.1.0 left it
    assert files(state_dir)["default.json"] == before["default.json"]  # a journal write
    p.run("plan", "--detailed-exitcode", env=env)  # exit 0: nothing left to do
    # the outputs still name where they were made; refresh found them where they are now
    outputs = json.loads(before["default.json"])["resources"]
    recorded = json.loads(p.run("state", "pull").stdout)["resources"]["model.trained"]["outputs"]
    assert "model.trained" not in outputs  # it is in the journal only
    old = Path(recorded["artifacts_path"])
    assert not old.exists()
    now = p.dir / ".substratus" / old.relative_to(recorded["workdir"])
    assert (now / "out.txt").is_file()


# -- the GCS backend -------------------------------------------------------------------------


def upload(server: GcsServer, layout: dict[str, Any]) -> dict[str, int]:
    """Put the fixture's objects in a bucket of the same name (artifact URLs name it), bases
    first. Journal objects are keyed by their base's generation (in the object name and the
    entry's ``base``), which no upload can keep: those two, and nothing else, follow the base's
    new generation. Returns every object's new generation."""
    client = server.client()
    bucket = server.direct_client().lookup_bucket(layout["bucket"])
    bucket = client.bucket(layout["bucket"]) if bucket else client.create_bucket(layout["bucket"])
    for blob in client.list_blobs(bucket):
        blob.delete()
    objects = layout["objects"]
    journal = [o for o in objects if JOURNAL_OBJECT.match(o["name"])]
    renamed: dict[int, int] = {}
    uploaded: dict[str, int] = {}
    for obj in [o for o in objects if o not in journal] + journal:
        name, content = obj["name"], obj["content"]
        if match := JOURNAL_OBJECT.match(name):
            old = int(match["generation"])
            new = renamed[old]  # its base was uploaded first
            name = name.replace(f".journal/{old}/", f".journal/{new}/", 1)
            assert content.count(f'"base":"{old}"') == 1, name
            content = content.replace(f'"base":"{old}"', f'"base":"{new}"', 1)
        blob = bucket.blob(name)
        blob.metadata = obj["metadata"] or None
        blob.upload_from_string(content.encode(), content_type=obj["content_type"])
        if name == obj["name"]:
            assert blob.crc32c == obj["crc32c"], name  # the bytes refresh fingerprints
        renamed[obj["generation"]] = uploaded[name] = int(blob.generation)
    return uploaded


def listing(server: GcsServer, bucket: str) -> dict[str, int]:
    return {b.name: int(b.generation) for b in server.client().list_blobs(bucket)}


def test_gcs_layout_with_its_journal_loads_unchanged(where: Path, gcs_server: GcsServer) -> None:
    layout = json.loads((FIXTURES / "gcs" / "objects.json").read_text())
    assert any(JOURNAL_OBJECT.match(o["name"]) for o in layout["objects"])
    uploaded = upload(gcs_server, layout)
    p = moved("gcs", where)
    env = {**gcs_server.env, "RUNS_LOG": str(where / "runs.log")}

    plan = p.run("plan", "--detailed-exitcode", env=env, check=2)
    for address in KEYED:
        assert f"{address} will be updated in-place (record only: nothing runs)" in plan.stdout
    assert listing(gcs_server, layout["bucket"]) == uploaded  # planning writes nothing
    check_records(p, "gcs", env)
    pulled = json.loads(p.run("state", "pull", env=env).stdout)
    p.run("apply", "--auto-approve", env=env)

    assert runs(where / "runs.log") == {}
    assert_migrated(pulled, json.loads(p.run("state", "pull", env=env).stdout))
    now = listing(gcs_server, layout["bucket"])
    kept = {k: v for k, v in uploaded.items() if not k.startswith("state/")}
    assert {k: now.get(k) for k in kept} == kept  # the artifacts are untouched
    p.run("plan", "--detailed-exitcode", env=env)  # exit 0: nothing left to do


# -- saved plans -----------------------------------------------------------------------------


def movable_plan(p: Project) -> dict[str, Any]:
    """The saved plan with the places its settings name (the state, the artifact store, the
    working directory, the configuration directory: absolute paths where it was made) moved to
    where the copy is. Nothing else in the file changes."""
    plan: dict[str, Any] = json.loads((p.dir / "plan.json").read_text())
    settings = plan["settings"]
    made_at = settings["base"]
    assert made_at == MADE["saved_plan"]["root"]
    for key, value in settings.items():
        if isinstance(value, str) and made_at in value:
            settings[key] = value.replace(made_at, str(p.dir))
    (p.dir / "plan.json").write_text(json.dumps(plan, indent=2) + "\n")
    return plan


def unsalted(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` with its sensitive markers' fingerprints left out."""
    text = re.sub(r'"\$sensitive": "[^"]*"', '"$sensitive": "…"', json.dumps(spec))
    return dict(json.loads(text))


def test_a_saved_plan_of_0_1_0_is_refused_and_a_new_one_runs_exactly_its_jobs(where: Path) -> None:
    """Plan files of 0.1.0 (plan format 1.0) hold digests over the plain sensitive values, so
    they are refused as of an older format, with what to do, nothing run and the state as it
    was; the plan made again promises the same jobs and runs exactly those."""
    p = moved("saved_plan", where)
    plan = movable_plan(p)
    log = where / "runs.log"
    to_run = [c["name"] for c in plan["resource_changes"] if c["actions"] == ["delete", "create"]]
    assert sorted(to_run) == ["base", "trained"]
    state_dir = p.dir / ".substratus" / "state"
    before = files(state_dir)

    out = p.run("apply", "plan.json", check=1, env={"RUNS_LOG": str(log)})
    assert "it was made by an older substratus (plan format 1.0; " in out.stderr, out.stderr
    assert "run `substratus plan` again" in out.stderr and "Traceback" not in out.stderr
    assert runs(log) == {} and files(state_dir) == before

    p.run("plan", "--out", "again.json", env={"RUNS_LOG": str(log)})
    again = json.loads((p.dir / "again.json").read_text())
    assert [c["actions"] for c in again["resource_changes"]] == [
        c["actions"] for c in plan["resource_changes"]
    ]
    p.run("apply", "again.json", env={"RUNS_LOG": str(log)})

    assert runs(log) == {name: 1 for name in to_run}
    state = json.loads(p.run("state", "pull").stdout)
    assert state["lineage"] == plan["prior_state"]["lineage"]
    for change in again["resource_changes"]:
        record = state["resources"][change["address"]]
        assert record["status"] == "ready", change["address"]
        if change["address"] not in KEYED:  # keyed by the salt this apply made (engine.digest)
            assert record["digest"] == change["digest_after"], change["address"]
        assert unsalted(record["spec"]) == unsalted(change["after"]), change["address"]
    # the secret the plan fingerprinted unsalted is recorded salted (engine.sensitive)
    key = state["resources"]["model.trained"]["spec"]["trainer"]["params"]["api_key"]
    assert key["$sensitive"].startswith("scrypt:") and isinstance(state["salt"], str)
    assert "revision" in json.dumps(state["resources"]["model.base"]["spec"])
    p.run("plan", "--detailed-exitcode", env={"RUNS_LOG": str(log)})  # exit 0: nothing left
    assert runs(log) == {name: 1 for name in to_run}


@pytest.mark.parametrize(
    ("claimed", "said"),
    [
        ("0.9", "it was made by an older substratus (plan format 0.9; "),
        ("2.0", "it was made by a newer substratus (plan format 2.0; "),
        ("next", "plan format 'next' is unknown ("),
    ],
)
def test_a_plan_of_another_format_is_refused(where: Path, claimed: str, said: str) -> None:
    """Exit 1 with what made the file and what to do; no traceback, no run, no state change."""
    p = moved("saved_plan", where)
    plan = movable_plan(p)
    plan["format_version"] = claimed
    (p.dir / "plan.json").write_text(json.dumps(plan, indent=2) + "\n")
    state_dir = p.dir / ".substratus" / "state"
    before = files(state_dir)
    log = where / "runs.log"

    out = p.run("apply", "plan.json", check=1, env={"RUNS_LOG": str(log)})

    assert out.stderr.startswith("Error: Invalid plan file"), out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    assert said in out.stderr
    assert "run `substratus plan` again" in out.stderr
    assert runs(log) == {}
    assert files(state_dir) == before
