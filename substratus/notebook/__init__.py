"""Notebook dev loop: live sync-back of files changed in a running notebook (see ``sync``)."""
