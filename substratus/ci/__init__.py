"""Continuous integration: the GitHub REST client (``github``), the sticky pull-request comment
and the GitHub Actions environment (``comment``), and reviewed plans (``review``: a plan as
Markdown, and the check that a plan file is the one reviewed). Never imports ``substratus.cli``.
"""
