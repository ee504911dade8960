"""``substratus state recover`` for the local backend: rebuild a damaged state from its journal.

``recover(files, source)`` holds the directory ``flock`` (``files.dir_guard``; the CLI holds the
state lock too) and:

1. reads the state as every command does (``StateFiles.load``): when that works, nothing is
   damaged and nothing is written;
2. takes the chain of writes the journal holds (``rebuild.journal_chain``) and replays it over
   a copy of the state it continues (``rebuild.rebuild``: the newest result wins; a copy newer
   than the whole journal is used only when named): ``source`` (``--from FILE``) when given,
   else the backup ``<ws>.json.backup`` and the base itself (``Candidate.exact`` when its sha256
   is the one the journal's writes name). With no journal (a corrupt base alone) the newest copy
   that reads is used;
3. writes the result as the next serial, as a compaction does: the damaged base and journal are
   kept as ``<name>.damaged`` (``atomic_write``), the journal's writes are sealed with the sha256
   of the rebuilt base, the rebuilt base is installed atomically and the journal removed. A crash
   at any point leaves the damaged state (refused again, and recoverable again) or the rebuilt
   one.

A copy that cannot be used, or a journal that is itself corrupt, is a ``DiagnosticError`` saying
why and what to do; nothing is written then.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import replace

from substratus.engine.diagnostic import DiagnosticError, fail
from substratus.state.files import (
    append_durably,
    atomic_write,
    dir_guard,
    fsync_dir,
    os_failure,
    read_bytes,
    sha256_hex,
)
from substratus.state.journal import JournalCorrupt, encode_seal
from substratus.state.rebuild import Candidate, Chain, Rebuilt, Unusable, journal_chain, rebuild
from substratus.state.snapshot import StateFiles


def recover(files: StateFiles, source: tuple[str, bytes] | None) -> str:
    """Rebuild the state in ``files`` (see the module docstring); what was done, for the user."""
    directory = files.state_path.parent
    if not directory.is_dir():
        raise fail(f"there is no state in {directory}", "Nothing to recover.")
    with dir_guard(directory):
        try:
            loaded = files.load()
        except DiagnosticError:
            loaded = None
        else:
            found = "no state" if loaded is None else f"serial {loaded[1]['serial']}"
            return f"The state {files.state_path} reads correctly ({found}); nothing to recover."
        base = read_bytes(files.state_path)
        journal = read_bytes(files.journal_path) or b""
        try:
            chain = journal_chain(journal)
        except JournalCorrupt as exc:
            raise files.journal_failure(exc) from None
        except Unusable as exc:
            raise _refused(files, str(exc)) from None
        candidates = _copies(files, base)
        if source is not None:
            candidates = [Candidate(f"the file {source[0]}", source[1], named=True)]
        candidates = [replace(c, exact=sha256_hex(c.data) == chain.base) for c in candidates]
        try:
            rebuilt = rebuild(chain.entries, candidates)
        except Unusable as exc:
            raise _refused(files, str(exc)) from None
        rebuilt.state.serial += 1  # a new write: no token read before it matches any more
        data = rebuilt.state.to_json().encode()
        try:
            _install(files, data, base, journal, chain)
        except OSError as exc:
            raise os_failure("write the state to", files.state_path, exc) from exc
    return _report(files, rebuilt, base is not None, bool(journal))


def _copies(files: StateFiles, base: bytes | None) -> list[Candidate]:
    found = []
    backup = read_bytes(files.backup_path)
    if backup is not None:
        found.append(Candidate(f"the backup {files.backup_path}", backup))
    if base is not None:
        found.append(Candidate(f"the state file {files.state_path}", base))
    return found


def _install(
    files: StateFiles, data: bytes, base: bytes | None, journal: bytes, chain: Chain
) -> None:
    if base is not None:
        atomic_write(files.damaged_path(files.state_path), base)
    if journal:
        atomic_write(files.damaged_path(files.journal_path), journal)
    if chain.bases:  # from here on the journal's writes are provably in the new base
        installed = sha256_hex(data)
        seals = b"".join(encode_seal(old, installed) for old in sorted(chain.bases))
        append_durably(files.journal_path, seals, chain.end)
    atomic_write(files.state_path, data)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(files.journal_path)
    fsync_dir(files.state_path.parent)


def _report(files: StateFiles, rebuilt: Rebuilt, had_base: bool, had_journal: bool) -> str:
    state, serials = rebuilt.state, rebuilt.replayed
    replayed = ""
    if serials:
        span = f"{serials[0]}–{serials[-1]}" if len(serials) > 1 else str(serials[0])
        replayed = f" and {len(serials)} write(s) of its journal (serials {span})"
    kept = [files.damaged_path(files.state_path)] if had_base else []
    if had_journal:
        kept.append(files.damaged_path(files.journal_path))
    lines = [
        f"Rebuilt the state {files.state_path} from {rebuilt.source.name} (serial "
        f"{rebuilt.from_serial}){replayed}: now serial {state.serial}, "
        f"{len(state.resources)} resource(s).",
    ]
    if kept:
        lines.append(f"The damaged files were kept as {' and '.join(map(str, kept))}.")
    lines.append("Check it with `substratus state list` and `substratus plan`.")
    return "\n".join(lines)


def _refused(files: StateFiles, reason: str) -> DiagnosticError:
    return fail(
        f"cannot rebuild the state {files.state_path} from its journal {files.journal_path}",
        f"{reason}. Nothing was changed. Pass a copy of the state that the journal continues "
        "with --from FILE (for example an earlier `substratus state pull` output, or the copy "
        "of the state file the journal was written on).",
    )
