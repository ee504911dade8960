"""How a command's ``--help`` reads (issue #16): every placeholder is a word.

``WordsCommand`` is the click command class of every substratus command. Typer prints an
argument as its name followed by its type in angle brackets (``address <str>``); here an
argument is its ``metavar`` (or its name in upper case) alone, with ``...`` when it takes
several values. Options name their placeholder with ``metavar=`` where they are declared
(``-f, --file PATH``, ``--timeout DURATION``), so typer prints no type for them either.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from typer.core import TyperCommand

if TYPE_CHECKING:
    from typer import _click as click  # typer's own click: the types its commands take


def argument_word(param: click.Parameter) -> str:
    """The placeholder of an argument: its metavar, else its name in upper case; ``...``
    after it when it takes several values."""
    word = param.metavar or (param.name or "").upper()
    return word + "..." if param.nargs != 1 else word


class WordsCommand(TyperCommand):
    """A typer command whose help lists arguments by a word, never by ``<type>``."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The ``Arguments`` and ``Options`` sections, as typer writes them, each argument
        named by ``argument_word``."""
        args: list[tuple[str, str]] = []
        opts: list[tuple[str, str]] = []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                args.append((argument_word(param), record[1]))
            elif param.param_type_name == "option":
                opts.append(record)
        for title, rows in (("Arguments", args), ("Options", opts)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)
