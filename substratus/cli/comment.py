"""The ``comment`` command (DESIGN §10): ``comment PLANFILE [--pr N] [--repo OWNER/NAME]`` posts
the plan as ONE sticky comment on the pull request (found again by its hidden marker — one per
workspace and configuration directory — and edited in place), and the full plan in
``$GITHUB_STEP_SUMMARY`` when it is set. The repository, pull request, token and API address
come from the GitHub Actions environment when not given (``GITHUB_REPOSITORY``,
``GITHUB_EVENT_PATH``, ``GITHUB_TOKEN``, ``GITHUB_API_URL``); the work is ``substratus.ci``'s.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer


def comment(
    planfile: Annotated[Path, typer.Argument(help="The plan saved with `plan --out`.")],
    pr: Annotated[
        int | None, typer.Option("--pr", help="Pull request number (default: from the event).")
    ] = None,
    repo: Annotated[
        str | None,
        typer.Option("--repo", help="OWNER/NAME (default: $GITHUB_REPOSITORY)."),
    ] = None,
) -> None:
    """Post the plan to its pull request as one sticky comment (edited in place on every run)
    and the full plan to the job summary.

    Example (GitHub Actions): substratus plan --out plan.json && substratus comment plan.json
    """
    from substratus.ci.comment import (
        MAX_BODY,
        STEP_SUMMARY_LIMIT,
        github_context,
        marker,
        upsert,
        write_step_summary,
    )
    from substratus.ci.github import GitHub
    from substratus.ci.review import file_sha256, plan_title
    from substratus.cli.planfile import read_plan
    from substratus.engine.render_markdown import render_markdown

    the_plan = read_plan(planfile)
    sha = file_sha256(planfile)
    title = plan_title(the_plan)
    env = os.environ
    summary = write_step_summary(
        env,
        render_markdown(
            the_plan,
            sha256=sha,
            title=title,
            budget=STEP_SUMMARY_LIMIT,
            plan_file=str(planfile),
        ),
    )
    ctx = github_context(env, pr=pr, repo=repo)
    mark = marker(the_plan.workspace, the_plan.settings.base or ".", environ=env)
    body = render_markdown(
        the_plan,
        sha256=sha,
        title=title,
        budget=MAX_BODY - len(mark) - 1,
        plan_file=str(planfile),
        full_plan_at="the job summary" if summary else "`substratus show " + str(planfile) + "`",
    )
    result = upsert(GitHub(ctx.api_url, ctx.token), ctx.repo, ctx.pr, body, mark)
    verb = {"created": "Posted", "updated": "Updated", "unchanged": "Kept"}[result.action]
    print(f"{verb} the plan comment on {ctx.repo}#{ctx.pr}: {result.url}")
    if summary:
        print("Wrote the full plan to the job summary.")
