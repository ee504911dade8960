"""The diagnostics for a damaged state: a journal that does not belong to its base (DESIGN §12:
nothing completed is lost by a damaged state file).

Shared by the local and the GCS backend; no I/O. Each message says what is wrong, names both
places (the base and the journal, as paths or ``gs://`` URLs), says that nothing was changed, and
gives the exact recovery command, ``substratus state recover`` (``recover_command``), with a
manual alternative. The backends decide *when* to raise them (see ``journal`` for the rules).
"""

from __future__ import annotations

from substratus.engine.diagnostic import DiagnosticError, fail
from substratus.state.workspace import DEFAULT_WORKSPACE

UNTOUCHED = (
    "Reading either one alone would lose completed work, so nothing was read and nothing was "
    "changed."
)


def recover_command(url: str, workspace: str) -> str:
    """The command that rebuilds the state of ``workspace`` in the backend at ``url``."""
    where = "" if workspace == DEFAULT_WORKSPACE else f" --workspace {workspace}"
    return f"substratus state recover --state {url}{where}"


def mismatch(
    state: str, journal: str, writes: str, serial: int, command: str, manual: str
) -> DiagnosticError:
    """The journal holds ``writes`` (``journal.describe``) made on top of another version of the
    base ``state`` than the one there now (at ``serial``)."""
    return fail(
        f"the state journal {journal} does not belong to the state {state}",
        f"The journal holds {writes} that do not belong to this state (serial {serial}): they "
        f"were made on top of another version of {state}, which was edited, damaged or replaced "
        f"by another copy after they were written. {UNTOUCHED}\n\n"
        f"To rebuild the state from the journal, run:\n\n  {command}\n\n{manual}",
    )


def damaged_base(
    state: str, journal: str, problem: str, writes: str, command: str, manual: str
) -> DiagnosticError:
    """The base ``state`` cannot be read (``problem``) and ``journal`` holds ``writes``."""
    return fail(
        f"the state {state} is corrupt, and its journal {journal} holds {writes} made on top of it",
        f"{problem}. {UNTOUCHED}\n\nTo rebuild the state from the journal, run:\n\n"
        f"  {command}\n\n{manual}",
    )


def no_base(state: str, journal: str, writes: str, command: str, manual: str) -> DiagnosticError:
    """There is no base ``state`` but ``journal`` holds ``writes`` that were not deleted with it."""
    return fail(
        f"the state {state} is missing, but its journal {journal} holds {writes}",
        f"The state was removed without its journal (substratus deletes a workspace's journal "
        f"with it). {UNTOUCHED}\n\nTo rebuild the state from the journal, run:\n\n"
        f"  {command}\n\n{manual}",
    )


def kept_changing(state: str) -> DiagnosticError:
    return fail(
        f"could not read the state {state}: it kept changing while it was being read",
        "Another run is writing it right now. Wait for it to finish (plan and apply take the "
        "state lock by default) and run the command again.",
    )
