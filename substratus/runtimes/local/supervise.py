"""The job supervisor: ``python -m substratus.runtimes.local.supervise`` (one per job run).

It outlives the apply that started it (a new session), so a job survives ``kill -9`` of the
apply. It is started with the job's working directory, environment and ``log.txt`` as
stdout/stderr, and the run's ``lock`` file descriptor (an exclusive ``flock`` it holds for its
whole life, so no second supervisor starts for the same run). It then:

1. sets aside a reserve (``RESERVE_BYTES`` allocated in the file that becomes ``exit_code``,
   ``RunFiles.reserve``), so that what it must write at the end still fits when the job fills
   the disk; when even that fails the disk is full already and the job is not started;
2. records ``supervisor.json`` (its pid and start time; none for the job host) and, once
   started, ``child.json``;
3. runs the command (in its session and process group), forwarding SIGTERM/SIGINT to it, in
   its own environment minus the ``--unset`` names (what the supervisor alone needed to start,
   such as ``PYTHONPATH``), plus ``SUBSTRATUS_ATTEMPT``; the lock stays with the supervisor
   (the command does not inherit it, so a command left behind by a killed supervisor never
   holds the run's lock); with ``--nodes N`` above 1, N ranks of the command instead
   (``ranks.py``: ``MASTER_ADDR``, ``MASTER_PORT``, ``WORLD_SIZE``, ``RANK``; one failed rank
   stops the others and fails the attempt); a command that fails starts again, up to
   ``--retries`` times (not after a forwarded signal or a full disk), with the partial
   artifacts as they are — on more than one node every rank starts again (the run is retried
   as one) — each failed attempt appended to ``attempts.jsonl`` (``attempts.py``) and said in
   the log;
4. notes whether the file system of the run directory or of the partial artifacts is full
   (``files.disk_full``: the job's own writes, its log and these records all fail there), then
   frees the reserve (empties the file: no new file is needed for the exit code);
5. on exit code 0, writes the version's manifest (``manifest.py``: paths, sizes, times and
   hashes, with the ``--label`` values) into the partial artifacts directory, renames it to
   the final version directory (the only way a version comes to exist), points
   ``content/artifacts`` at it and makes it read-only (best effort);
6. on failure with a reason it knows (a full disk, artifacts it could not publish) appends the
   reason to the log, whose own lines may have been lost;
7. on success removes ``content/params.json`` (it may hold sensitive params; a failed run keeps
   it, with the rest of its directory, for debugging);
8. writes ``exit_code`` last: the code (a signal N is recorded as 128+N) on the first line, the
   reason, if any, on the second.

It imports nothing from the engine so it starts fast. The applying process does not start it
per job: a job on one node is supervised by the job host (``host.py``), one process per apply
that does all of the above for every job in a thread of its own (``supervise_with`` with the
host's ``Hooks``: the record names the host, and the command gets its own session); the host
starts this command (``command_line``) for a job on more than one node.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import shutil
import signal
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from substratus.runtimes.local import attempts, manifest, ranks
from substratus.runtimes.local.files import disk_full, make_read_only, remove_tree, write_json
from substratus.runtimes.local.process import ProcessRef
from substratus.runtimes.local.workdir import RunFiles

RESERVE_BYTES = 64 * 1024
ATTEMPT_ENV = "SUBSTRATUS_ATTEMPT"  # runtimes.contract: the attempt, 1, 2, …


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="substratus-supervise")
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument("--partial", required=True, type=Path)
    parser.add_argument("--final", required=True, type=Path)
    parser.add_argument("--lock-fd", type=int, default=None, help="held open until exit")
    parser.add_argument(
        "--label", action="append", default=[], help="KEY=VALUE recorded in the manifest"
    )
    parser.add_argument(
        "--unset", action="append", default=[], help="NAME removed before the command starts"
    )
    parser.add_argument("--nodes", type=int, default=1, help="ranks to run (ranks.py)")
    parser.add_argument(
        "--retries", type=int, default=0, help="times a failed command starts again"
    )
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if not args.command:
        parser.error("no command given")
    return args


def arguments(job: Mapping[str, Any], lock_fd: int | None = None) -> argparse.Namespace:
    """What ``parse`` makes of a command line, from its fields (``run_dir``, ``partial``,
    ``final``, ``label``, ``unset``, ``retries``, ``command``, ``nodes``) as JSON gives them:
    no parsing."""
    return argparse.Namespace(
        run_dir=Path(job["run_dir"]),
        partial=Path(job["partial"]),
        final=Path(job["final"]),
        lock_fd=lock_fd,
        label=[str(x) for x in job.get("label", ())],
        unset=[str(x) for x in job.get("unset", ())],
        retries=int(job.get("retries", 0)),
        command=[str(x) for x in job["command"]],
        nodes=int(job.get("nodes", 1)),
    )


def command_line(job: Mapping[str, Any], lock_fd: int) -> list[str]:
    """The arguments of this command (what ``parse`` reads) for ``job`` (``arguments``'s
    fields) holding ``lock_fd``."""
    argv = ["--run-dir", str(job["run_dir"]), "--partial", str(job["partial"])]
    argv += ["--final", str(job["final"]), "--lock-fd", str(lock_fd)]
    for flag, key in (("--label", "label"), ("--unset", "unset")):
        for value in job.get(key, ()):
            argv += [f"{flag}={value}"]
    argv += ["--nodes", str(int(job.get("nodes", 1))), "--retries", str(int(job.get("retries", 0)))]
    return [*argv, "--", *[str(x) for x in job["command"]]]


@dataclass(frozen=True)
class Hooks:
    """What differs between this command and the job host (``host.py``), around what both do
    (``supervise_with``): ``attempt(n)`` runs attempt ``n`` of the command (its exit code, why
    the disk stopped it, which rank failed; ``OSError`` when it cannot start), ``say`` writes a
    line to the run's log, ``stop_asked`` tells whether the run was told to stop (no attempt
    follows), ``record`` is what ``supervisor.json`` holds."""

    attempt: Callable[[int], tuple[int, str, str]]
    say: Callable[[str], None]
    stop_asked: Callable[[], bool]
    record: Mapping[str, Any]


def _publish(partial: Path, final: Path, run: RunFiles, labels: list[str]) -> None:
    if final.exists():  # completed before (cannot happen under the lock; keep the first)
        remove_tree(partial)
    else:
        manifest.write(partial, dict(label.partition("=")[::2] for label in labels))
        partial.rename(final)
    link = run.content / "artifacts"
    tmp = run.content / ".artifacts.tmp"
    remove_tree(tmp)
    tmp.symlink_to(final, target_is_directory=True)
    os.replace(tmp, link)
    make_read_only(final)


def _reserve(run: RunFiles) -> None:
    """Allocate ``RESERVE_BYTES`` in the run directory. Raises ``OSError`` when there is no
    space for it; a file system that cannot allocate ahead is run without a reserve."""
    try:
        fd = os.open(run.reserve, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.posix_fallocate(fd, 0, RESERVE_BYTES)
        finally:
            os.close(fd)
    except OSError as exc:
        run.reserve.unlink(missing_ok=True)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise


def _say(text: str) -> None:
    """A line in the log (stderr); lost when even that cannot be written."""
    with contextlib.suppress(OSError, ValueError):
        print(f"substratus: {text}", file=sys.stderr, flush=True)


def _free(run: RunFiles) -> None:
    """Free the reserve's space; the file stays, to hold the exit code."""
    with contextlib.suppress(OSError):
        os.truncate(run.reserve, 0)


def _write_exit_code(run: RunFiles, code: int, reason: str = "") -> None:
    """Write ``exit_code`` through the reserve's file (the same inode: it fits on a full
    disk once the reserve was freed)."""
    run.reserve.write_text(f"{code}\n{reason}\n" if reason else f"{code}\n")
    os.replace(run.reserve, run.exit_code)


def _not_started(run: RunFiles, command: str, exc: OSError, say: Callable[[str], None]) -> int:
    """Record why the command never ran (127: not found, 126: other); a full disk is said."""
    code = 127 if isinstance(exc, FileNotFoundError) else 126
    reason = f"cannot run {command!r}: {exc}"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        reason = f"the job was not started: {disk_full([run.dir]) or exc.strerror}"
    say(reason)
    with contextlib.suppress(OSError):
        _write_exit_code(run, code, reason)
    return code


def executable(command: list[str], env: Mapping[str, str]) -> str:
    """The file ``command[0]`` names, looked up in ``env``'s ``PATH`` as a shell would (as
    ``subprocess.Popen`` does); ``FileNotFoundError`` when there is none."""
    if os.sep in command[0]:
        return command[0]
    found = shutil.which(command[0], path=os.pathsep.join(os.get_exec_path(dict(env))))
    if found is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), command[0])
    return found


_stop_asked: list[int] = []  # the signals forwarded to the command: no attempt follows


def _run(
    args: argparse.Namespace, run: RunFiles, env: Mapping[str, str], attempt: int = 1
) -> tuple[int, str, str]:
    """Run the command (``posix_spawn``: no copy of this process; stdin ``/dev/null``, the
    signals Python ignores back to their defaults) as attempt ``attempt``, or its ranks (more
    than one node): its exit code, why the disk stopped it (a full disk: no attempt follows),
    and, when known, which rank failed."""
    unset = set(args.unset)
    job_env = {k: v for k, v in env.items() if k not in unset}
    job_env[ATTEMPT_ENV] = str(attempt)
    if args.nodes > 1:
        exe = executable(args.command, job_env)
        code, why = ranks.run(args.command, exe, job_env, args.nodes, run, stopped=_stop_asked)
        return code, disk_full([run.dir, args.partial]) or "", why
    pid = os.posix_spawn(
        executable(args.command, job_env),
        args.command,
        job_env,
        file_actions=[(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)],
        setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
    )
    ended = False

    def forward(signum: int, _frame: FrameType | None) -> None:
        _stop_asked.append(signum)
        if not ended:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    if _stop_asked:  # told to stop while this attempt started: it stops too
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, _stop_asked[-1])
    started = ProcessRef.of(pid)
    if started is not None:
        with contextlib.suppress(OSError):  # only lost if this supervisor is killed too
            write_json(run.child, started.to_json())
    _, status = os.waitpid(pid, 0)
    ended = True
    code = os.waitstatus_to_exitcode(status)
    full = disk_full([run.dir, args.partial])
    return (128 - code if code < 0 else code), full or "", ""


def _attempts(args: argparse.Namespace, run: RunFiles, hooks: Hooks) -> tuple[int, str]:
    """Run the command up to ``1 + args.retries`` times, until it succeeds, fails for a reason
    another attempt cannot change (a full disk), or is told to stop; each failed attempt is
    recorded (``attempts.py``) and said in the log. The last attempt's code and reason."""
    total = 1 + max(0, args.retries)
    number = 1
    while True:
        code, full, rank = hooks.attempt(number)
        stop = hooks.stop_asked()
        last = code == 0 or bool(full) or stop or number >= total
        if code != 0 and args.retries > 0:
            why = rank or attempts.reason(code)
            attempts.record(run, number, code, full or why, final=last)
            if not last:
                hooks.say(
                    f"attempt {number} of {total} failed ({why}); attempt {number + 1} starts"
                )
            elif number > 1 and not stop and not full:
                hooks.say(f"attempt {number} of {total} failed ({why}); no retries left")
        if last:
            return code, full or rank
        number += 1


def supervise_with(args: argparse.Namespace, hooks: Hooks) -> int:
    """Supervise one run of ``args`` (as ``parse`` makes them): steps 1–8 of the module
    docstring, the command's attempts run by ``hooks``."""
    run = RunFiles(args.run_dir)
    try:
        _reserve(run)
        if hooks.record:
            write_json(run.supervisor, dict(hooks.record))
    except OSError as exc:
        _free(run)
        return _not_started(run, args.command[0], exc, hooks.say)
    try:
        code, reason = _attempts(args, run, hooks)
    except OSError as exc:
        _free(run)
        return _not_started(run, args.command[0], exc, hooks.say)
    _free(run)  # what follows must fit even on a full disk
    if code == 0:
        try:
            _publish(args.partial, args.final, run, args.label)
            reason = ""
            run.params.unlink(missing_ok=True)
        except OSError as exc:
            code, reason = 1, f"cannot publish the artifacts: {exc.strerror or exc}"
    if reason:
        hooks.say(reason)
    _write_exit_code(run, code, reason)
    return code


def supervise(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> int:
    """Run ``args`` (as ``parse`` makes them) with ``env`` (default: this process's
    environment, minus ``args.unset`` for the command), as this process: signals forwarded,
    the record naming this process."""
    run = RunFiles(args.run_dir)
    if args.lock_fd is not None:  # held here, never by the command
        with contextlib.suppress(OSError):
            os.set_inheritable(args.lock_fd, False)
    _stop_asked.clear()
    me = ProcessRef.of(os.getpid())
    hooks = Hooks(
        attempt=lambda n: _run(args, run, os.environ if env is None else env, n),
        say=_say,
        stop_asked=lambda: bool(_stop_asked) or run.stop.exists(),
        record=me.to_json() if me is not None else {},
    )
    try:
        return supervise_with(args, hooks)
    finally:
        sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    return supervise(parse(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
