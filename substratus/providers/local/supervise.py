"""The job supervisor: ``python -m substratus.providers.local.supervise`` (one per job run).

It outlives the apply that started it (a new session), so a job survives ``kill -9`` of the
apply. It is started with the job's working directory, environment and ``log.txt`` as
stdout/stderr, and the run's ``lock`` file descriptor (an exclusive ``flock`` it holds for its
whole life, so no second supervisor starts for the same run). It then:

1. records ``supervisor.json`` (its pid and start time) and, once started, ``child.json``;
2. runs the command, forwarding SIGTERM/SIGINT to it;
3. on exit code 0, renames the partial artifacts directory to the final version directory (the
   only way a version comes to exist), points ``content/artifacts`` at it and makes it
   read-only (best effort);
4. writes ``exit_code`` last (a signal N is recorded as 128+N).

It imports nothing from the engine so it starts fast.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType

from substratus.providers.local.files import make_read_only, remove_tree, write_json
from substratus.providers.local.process import ProcessRef
from substratus.providers.local.workdir import RunFiles


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="substratus-supervise")
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument("--partial", required=True, type=Path)
    parser.add_argument("--final", required=True, type=Path)
    parser.add_argument("--lock-fd", type=int, default=None, help="held open until exit")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if not args.command:
        parser.error("no command given")
    return args


def _publish(partial: Path, final: Path, run: RunFiles) -> None:
    if final.exists():  # completed before (cannot happen under the lock; keep the first)
        remove_tree(partial)
    else:
        partial.rename(final)
    link = run.content / "artifacts"
    tmp = run.content / ".artifacts.tmp"
    remove_tree(tmp)
    tmp.symlink_to(final, target_is_directory=True)
    os.replace(tmp, link)
    make_read_only(final)


def _write_exit_code(run: RunFiles, code: int) -> None:
    tmp = run.exit_code.with_name(".exit_code.tmp")
    tmp.write_text(f"{code}\n")
    os.replace(tmp, run.exit_code)


def supervise(args: argparse.Namespace) -> int:
    run = RunFiles(args.run_dir)
    me = ProcessRef.of(os.getpid())
    if me is not None:
        write_json(run.supervisor, me.to_json())
    try:
        child = subprocess.Popen(args.command, stdin=subprocess.DEVNULL)
    except OSError as exc:
        print(f"substratus: cannot run {args.command[0]!r}: {exc}", file=sys.stderr, flush=True)
        code = 127 if isinstance(exc, FileNotFoundError) else 126
        _write_exit_code(run, code)
        return code

    def forward(signum: int, _frame: FrameType | None) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    started = ProcessRef.of(child.pid)
    if started is not None:
        write_json(run.child, started.to_json())
    code = child.wait()
    if code < 0:
        code = 128 - code
    if code == 0:
        try:
            _publish(args.partial, args.final, run)
        except OSError as exc:
            print(f"substratus: cannot publish the artifacts: {exc}", file=sys.stderr, flush=True)
            code = 1
    sys.stdout.flush()
    _write_exit_code(run, code)
    return code


def main(argv: list[str] | None = None) -> int:
    return supervise(_parse(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
