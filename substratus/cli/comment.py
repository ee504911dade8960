"""The ``comment`` command (DESIGN §10): ``comment PLANFILE [--pr N] [--repo OWNER/NAME]`` posts
the plan as ONE sticky comment on the pull request (found again by its hidden marker — one per
workspace and configuration directory — and edited in place), and the full plan in
``$GITHUB_STEP_SUMMARY`` when it is set. The repository, pull request, token and API address
come from the GitHub Actions environment when not given (``GITHUB_REPOSITORY``,
``GITHUB_EVENT_PATH``, ``GITHUB_TOKEN``, ``GITHUB_API_URL``); the work is ``substratus.ci``'s.

``PLANFILE`` is the plan saved with ``plan --out``, or what ``plan --json`` printed: a stream
that saved a plan posts that plan; one that shows the plan failed (its errors, or no summary at
all) posts the failure instead — the comment then says the plan failed, with the errors, and
that the plan it showed before is outdated — and the command exits 1, as the plan did. A failed
plan names no workspace or directory, so ``-f``/``--workspace`` say which comment it replaces
(the same as the plan's). Every comment names the commit and links the CI run
(``ci.comment.run_info``); plan file names are shown relative to the working directory, and
no absolute path under the repository root is posted (``ci.comment.repo_paths``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from substratus.cli.errors import EXIT_ERROR
from substratus.cli.options import Files, Workspace

if TYPE_CHECKING:
    from collections.abc import Callable

    from substratus.ci.failure import PlanOutcome
    from substratus.ci.github import GitHub
    from substratus.engine.diagnostic import Diagnostic


def comment(
    planfile: Annotated[
        Path,
        typer.Argument(
            metavar="PLANFILE",
            help="The plan saved with `plan --out`, or what `plan --json` printed (a failed "
            "plan is posted as failed).",
        ),
    ],
    pr: Annotated[
        int | None,
        typer.Option("--pr", metavar="N", help="Pull request number (default: from the event)."),
    ] = None,
    repo: Annotated[
        str | None,
        typer.Option(
            "--repo", metavar="OWNER/NAME", help="The repository (default: $GITHUB_REPOSITORY)."
        ),
    ] = None,
    files: Files = None,
    workspace: Workspace = "default",
) -> None:
    """Post the plan to its pull request as one sticky comment (edited in place on every run)
    and the full plan to the job summary; a failed plan is posted as failed.

    Example (GitHub Actions): substratus plan --out plan.json && substratus comment plan.json
    """
    from substratus.ci.failure import read_outcome
    from substratus.engine.diagnostic import fail

    try:
        text = planfile.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise fail("Cannot read the plan file", f"{planfile}: {exc}.") from exc
    outcome = read_outcome(text) if not _is_document(text) else None
    if outcome is not None and not outcome.failed:
        if outcome.plan_file is None:
            raise fail(
                f"{planfile} holds a plan that was not saved",
                "Save it: `substratus plan --json --out plan.json > plan.ndjson`, then comment "
                "plan.json or plan.ndjson.",
            )
        planfile, outcome = Path(outcome.plan_file), None
    if outcome is None:
        _post_plan(planfile, pr, repo)
        return
    _post_failure(outcome, list(files or ["."]), workspace, pr, repo)
    raise typer.Exit(EXIT_ERROR)


def _is_document(text: str) -> bool:
    """A plan file: one JSON object (a ``plan --json`` stream has a ``type`` on every line)."""
    import json

    try:
        doc = json.loads(text)
    except ValueError:
        return False
    return isinstance(doc, dict) and "type" not in doc


def shown_path(path: Path) -> str:
    """``path`` as the user would type it here: relative to the working directory when inside."""
    if path.is_absolute():
        try:
            return path.relative_to(Path.cwd()).as_posix()
        except ValueError:
            return str(path)
    return path.as_posix()


def _post_plan(planfile: Path, pr: int | None, repo: str | None) -> None:
    from substratus.ci.comment import MAX_BODY, github_context, marker, run_info
    from substratus.ci.review import file_sha256, plan_title
    from substratus.cli.planfile import read_plan
    from substratus.engine.render_markdown import render_markdown

    env = os.environ
    the_plan = read_plan(planfile)
    sha, shown, run = file_sha256(planfile), shown_path(planfile), run_info(env)
    title = plan_title(the_plan)

    def full(room: int) -> str:  # the job summary: field diffs up to its 1 MiB
        return render_markdown(
            the_plan, sha256=sha, title=title, budget=room, unit="bytes", plan_file=shown, run=run
        )

    summary = _summary(full, shown)
    ctx = github_context(env, pr=pr, repo=repo)
    mark = marker(the_plan.workspace, the_plan.settings.base or ".", environ=env)
    where = None
    if summary:
        run_link = f" of [CI run {run.run_id}]({run.run_url})" if run.run_url else " of this run"
        where = f"The job summary{run_link} holds the full plan."
    body = render_markdown(
        the_plan,
        sha256=sha,
        title=title,
        budget=MAX_BODY - len(mark) - 1,
        plan_file=shown,
        full_plan=where,
        run=run,
    )
    _upsert(_client(ctx.api_url, ctx.token), ctx.repo, ctx.pr, body, mark, "")
    if summary:
        print("Wrote the full plan to the job summary.")


def _summary(render: Callable[[int], str], plan_file: str) -> bool:
    """Write ``render(room)`` to the job summary when there is one (``room``: bytes left)."""
    from substratus.ci.comment import repo_paths, summary_room, write_step_summary

    room = summary_room(os.environ)
    if room is None:
        return False
    return write_step_summary(os.environ, repo_paths(render(room)), plan_file)


def _post_failure(
    outcome: PlanOutcome, files: list[str], workspace: str, pr: int | None, repo: str | None
) -> None:
    from substratus import __version__
    from substratus.ci.comment import MAX_BODY, find_comment, github_context, marker, run_info
    from substratus.ci.failure import failed_markdown
    from substratus.ci.review import title
    from substratus.engine.mdtext import code_span
    from substratus.wiring import config_dir

    env = os.environ
    outcome = repo_located(outcome)
    base = config_dir(files)
    ctx = github_context(env, pr=pr, repo=repo)
    mark = marker(workspace, base, environ=env)
    client = _client(ctx.api_url, ctx.token)
    previous = find_comment(client, ctx.repo, ctx.pr, mark)
    body = failed_markdown(
        title(workspace, base, failed=True),
        outcome,
        run=run_info(env),
        previous=str(previous.get("body") or "") if previous else None,
        about=f"substratus {code_span(__version__)} · workspace {code_span(workspace)}",
        budget=MAX_BODY - len(mark) - 1,
    )
    _summary(lambda room: body, "PLANFILE")
    _upsert(client, ctx.repo, ctx.pr, body, mark, " (the plan failed)")


def repo_located(outcome: PlanOutcome) -> PlanOutcome:
    """``outcome`` with each error's file relative to the repository root (the stream names it
    relative to the directory the plan ran in, this one): what a reader of the pull request
    finds in the repository, ``ml/substratus.yaml`` also when the plan ran in ``ml/``."""
    from dataclasses import replace

    from substratus.ci.comment import repo_relative

    def moved(d: Diagnostic) -> Diagnostic:
        if d.source is None:
            return d
        return replace(d, source=replace(d.source, file=repo_relative(d.source.file)))

    return replace(outcome, errors=tuple(moved(d) for d in outcome.errors))


def _client(api_url: str, token: str) -> GitHub:
    from substratus.ci.github import GitHub

    return GitHub(api_url, token)


def _upsert(client: GitHub, repo: str, pr: int, body: str, mark: str, note: str) -> None:
    from substratus.ci.comment import repo_paths, upsert

    result = upsert(client, repo, pr, repo_paths(body), mark)
    verb = {"created": "Posted", "updated": "Updated", "unchanged": "Kept"}[result.action]
    print(f"{verb} the plan comment on {repo}#{pr}{note}: {result.url}")
