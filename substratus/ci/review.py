"""Reviewed plans (DESIGN §10): a plan as Markdown for a pull request, and the check that a plan
file is exactly the one that was reviewed. Used by the ``plan``, ``show``, ``comment`` and
``apply`` commands; imports no part of the CLI.

- ``plan_markdown(plan, resolved, sha256, plan_file)``: the pull-request rendering of a plan
  (title: workspace and configuration directory); for a plan saved to ``plan_file`` it names
  that file and its SHA-256, otherwise it says the plan was not saved;
- ``check_reviewed(planfile, expected)``: refuses a plan file whose SHA-256 (of its bytes) is
  not the reviewed one; ``expected`` ``pr`` reads the hash from the plan comment on the pull
  request (GitHub Actions environment).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from substratus.engine.diagnostic import fail
from substratus.engine.plan import Plan
from substratus.engine.plan_document import parse_plan, plan_sha256
from substratus.wiring import Resolved

SHA256 = re.compile(r"^[0-9a-f]{64}$")


def file_sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise fail("Cannot read the plan file", f"{path}: {exc.strerror}.") from exc


def plan_title(plan: Plan, resolved: Resolved | None = None) -> str:
    return title(plan.workspace, plan.settings.base or (resolved.base if resolved else "."))


def title(workspace: str, base: str | os.PathLike[str], failed: bool = False) -> str:
    """ "substratus plan: workspace `default` in `ml`" (``failed``: "substratus plan failed: …")."""
    where = Path(str(base))
    verb = "plan failed" if failed else "plan"
    return f"substratus {verb}: workspace `{workspace}` in `{where.name or where}`"


def plan_markdown(
    plan: Plan,
    resolved: Resolved | None = None,
    sha256: str = "",
    plan_file: Path | None = None,
) -> str:
    """``plan_file``: where the plan was saved (None: not saved, and the text says so);
    ``sha256``: of that file (default: of the document ``--out`` writes, which is the same
    thing for a plan just made)."""
    from substratus.engine.render_markdown import render_markdown

    return render_markdown(
        plan,
        sha256=sha256 or plan_sha256(plan),
        title=plan_title(plan, resolved),
        plan_file=None if plan_file is None else str(plan_file),
    )


def check_reviewed(planfile: Path, expected: str) -> None:
    """Refuse ``planfile`` unless its SHA-256 is ``expected`` (or the one on the PR comment)."""
    actual = file_sha256(planfile)
    want = expected.strip().lower()
    if want == "pr":
        plan = parse_plan(planfile.read_text(encoding="utf-8"))
        want = reviewed_sha256_from_pr(plan.workspace, plan.settings.base or ".")
    if not SHA256.match(want):
        raise fail(
            f"--expect-sha256 {expected!r} is not a SHA-256",
            "Give the 64 hexadecimal digits shown as `Plan SHA-256` in the review, or `pr`.",
        )
    if actual != want:
        raise fail(
            "The plan file is not the plan that was reviewed",
            f"{planfile} has SHA-256 {actual}, but {want} was reviewed. Nothing was applied. "
            "Plan again, get the new plan reviewed, and apply that file.",
        )


REVIEWED = re.compile(r"Plan SHA-256: `?([0-9a-f]{64})`?")


def reviewed_sha256_from_pr(workspace: str, config_dir: str) -> str:
    """The plan hash on OUR sticky comment of the pull request (GitHub Actions environment):
    only a comment ``comment.find_comment`` accepts as ours counts, never a quote of it."""
    from substratus.ci.comment import find_comment, github_context, marker
    from substratus.ci.failure import FAILED
    from substratus.ci.github import GitHub

    ctx = github_context(os.environ)
    mark = marker(workspace, config_dir, environ=os.environ)
    found = find_comment(GitHub(ctx.api_url, ctx.token), ctx.repo, ctx.pr, mark)
    if found is None:
        raise fail(
            f"No plan comment of this workspace on {ctx.repo}#{ctx.pr}",
            "Post the plan with `substratus comment plan.json` in the pull request's workflow, "
            "or give the reviewed hash: --expect-sha256 HEX.",
        )
    body = str(found.get("body") or "")
    if FAILED in body:
        raise fail(
            f"The last plan on {ctx.repo}#{ctx.pr} failed",
            f"{found.get('html_url', '')} shows the plan's errors, so nothing was reviewed and "
            "nothing is applied. Fix them, let the plan run again, and apply the plan it posts.",
        )
    hashes = set(REVIEWED.findall(body))
    if len(hashes) != 1:
        raise fail(
            f"The plan comment on {ctx.repo}#{ctx.pr} shows no single plan SHA-256",
            f"{found.get('html_url', '')}: give the reviewed hash with --expect-sha256 HEX.",
        )
    return str(hashes.pop())
