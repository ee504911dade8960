"""What ``substratus version`` prints; imports nothing (the entry point answers ``version``
without the app)."""

from __future__ import annotations


def version_line() -> str:
    from substratus import __version__

    return f"substratus {__version__}"
