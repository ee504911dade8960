#!/usr/bin/env bash
# Install substratus with its test tools and run every check CI runs:
# ruff (lint + format), mypy --strict, import-linter layer contracts, and the pytest suite
# (unit, golden, property and end-to-end tests with real processes, fake-gcs-server, a real
# Kubernetes control plane, a local stand-in for GitHub's REST API, and the Mermaid renderer).
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check -e ".[test]"
# The Kubernetes test control plane (tests/support/kube.py): a no-op once built and cached.
SUBSTRATUS_KUBE_ASSETS=$(bash scripts/kube-assets.sh | tail -n 1)
export SUBSTRATUS_KUBE_ASSETS
# The Mermaid renderer that draws plan graphs in tests (mermaid-cli + Chromium): cached likewise.
SUBSTRATUS_MMDC=$(bash scripts/mermaid-cli.sh | tail -n 1)
export SUBSTRATUS_MMDC

echo "== ruff"
ruff check substratus tests bench examples
ruff format --check substratus tests bench examples
echo "== mypy"
mypy
echo "== import-linter"
lint-imports
echo "== pytest"
python3 -m pytest -q -p no:cacheprovider "$@"
