#!/usr/bin/env bash
# Install the Mermaid renderer the test suite draws plan graphs with: mermaid-cli (npm) driving
# the system's Chromium (Debian's package; puppeteer's own browser download is skipped: it is not
# reachable from build machines). Cached outside the repository by version; idempotent.
# Prints the path of `mmdc` as the last line of stdout; `puppeteer.json` beside its package
# directory tells it which browser to use.
set -euo pipefail
VERSION=${MERMAID_CLI_VERSION:-11.17.0}
DIR=${SUBSTRATUS_MERMAID_CLI:-${XDG_CACHE_HOME:-$HOME/.cache}/substratus/mermaid-cli/$VERSION}

browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "mermaid-cli: installing chromium (apt-get)" >&2
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >&2
    browser=$(command -v chromium)
  else
    echo "error: no Chromium found; install it (e.g. sudo apt-get install chromium)" >&2
    exit 1
  fi
fi
command -v npm >/dev/null || { echo "error: npm is needed to install mermaid-cli" >&2; exit 1; }

if [ ! -x "$DIR/node_modules/.bin/mmdc" ]; then
  echo "mermaid-cli: installing @mermaid-js/mermaid-cli@$VERSION into $DIR" >&2
  mkdir -p "$DIR"
  (cd "$DIR" && PUPPETEER_SKIP_DOWNLOAD=1 npm install --no-audit --no-fund --loglevel=error \
    "@mermaid-js/mermaid-cli@$VERSION" >&2)
fi
printf '{"executablePath": "%s", "args": ["--no-sandbox", "--disable-gpu"]}\n' "$browser" \
  > "$DIR/puppeteer.json"
echo "$DIR/node_modules/.bin/mmdc"
