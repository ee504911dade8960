#!/usr/bin/env bash
# Build OpenTofu (the `tofu` command) from the Go module proxy, into a cache directory outside the
# repository keyed by its version, for bench/versus.py:
#
#   OpenTofu v1.12.6 (github.com/opentofu/opentofu/cmd/tofu)
#
# Output: progress on stderr; the path of the tofu binary as the LAST line of stdout. Exit 1 on
# failure, with the failing command and the tail of its output on stderr.
#
# Environment:
#   SUBSTRATUS_OPENTOFU_BIN  bin directory to fill (default:
#                            ${XDG_CACHE_HOME:-$HOME/.cache}/substratus/opentofu/<version>/bin)
#
# Idempotent: a binary that exists and reports the expected version is kept. The binary is written
# to a temporary file and renamed into place; a lock serialises concurrent runs. Sources are
# assembled in a scratch directory under the cache, never in the repository. OpenTofu's own go.mod
# replaces github.com/hashicorp/hcl/v2 with OpenTofu's fork; a wrapper module does not inherit
# replace directives, so the script copies that line from the downloaded module's go.mod.
# Needs Go (1.26 builds this version) and access to the Go module proxy; not run in CI.
set -euo pipefail

TOFU_VERSION=v1.12.6
MODULE=github.com/opentofu/opentofu

cache_dir="${XDG_CACHE_HOME:-$HOME/.cache}/substratus/opentofu/$TOFU_VERSION"
bin_dir="${SUBSTRATUS_OPENTOFU_BIN:-$cache_dir/bin}"
scratch="$cache_dir/src"

say() { echo "opentofu: $*" >&2; }
die() { say "error: $*"; exit 1; }

# run CMD...: run CMD with its output in the log file; on failure show the command and tail.
run() {
  local log="$scratch/logs/build.log"
  printf '\n$ %s\n' "$*" >>"$log"
  local rc=0
  "$@" >>"$log" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ]; then
    say "error: command failed (exit $rc) in $PWD:"
    say "  $*"
    say "last lines of $log:"
    tail -n 40 "$log" | sed 's/^/  | /' >&2
    exit 1
  fi
}

# version_ok: the binary in bin_dir exists and reports the pinned version.
version_ok() {
  local exe="$bin_dir/tofu" out
  [ -x "$exe" ] || return 1
  out=$(CHECKPOINT_DISABLE=1 TF_CLI_CONFIG_FILE=/dev/null "$exe" version 2>&1) || return 1
  grep -qx "OpenTofu ${TOFU_VERSION}" <<<"$out"
}

command -v go >/dev/null 2>&1 || die "the 'go' command is not on PATH (Go 1.26 or newer is needed)"
mkdir -p "$bin_dir" "$scratch/logs" || die "cannot create $bin_dir and $scratch"
bin_dir=$(cd "$bin_dir" && pwd)  # absolute: the build runs in another directory
trap 'rm -f "$bin_dir"/.*.tmp.$$' EXIT  # no half-written binary survives a failure

exec 9>"$cache_dir/.lock"
if command -v flock >/dev/null 2>&1; then
  flock -n 9 || { say "another build holds $cache_dir/.lock; waiting"; flock 9; }
else
  say "warning: flock not found; concurrent runs are not serialised"
fi

if version_ok; then
  say "tofu $TOFU_VERSION: up to date"
  echo "$bin_dir/tofu"
  exit 0
fi

export GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0
started=$SECONDS
say "building tofu $TOFU_VERSION (a few minutes)"
rm -rf "$scratch/tofu"
mkdir -p "$scratch/tofu"
cd "$scratch/tofu"
: >"$scratch/logs/build.log"

upstream_gomod=$(go mod download -json "$MODULE@$TOFU_VERSION" \
  | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
[ -f "$upstream_gomod" ] || die "cannot find the go.mod of $MODULE@$TOFU_VERSION"
# The line reads `replace github.com/hashicorp/hcl/v2 [vX] => github.com/opentofu/hcl/v2 vY`.
hcl_replace=$(awk '$0 ~ /github\.com\/hashicorp\/hcl\/v2/ && $0 ~ /=>/ {
    for (i = 1; i < NF; i++) if ($i == "=>") { print $(i + 1) "@" $(i + 2); exit }
  }' "$upstream_gomod")
[ -n "$hcl_replace" ] || die "no replace of github.com/hashicorp/hcl/v2 found in $upstream_gomod"
say "hcl/v2 is replaced by $hcl_replace (from $MODULE's go.mod)"

cat >tools.go <<'GO'
//go:build tools

package tools

import _ "github.com/opentofu/opentofu/cmd/tofu"
GO
run go mod init substratus.local/opentofu
run go mod edit "-replace=github.com/hashicorp/hcl/v2=$hcl_replace"
run go get "$MODULE@$TOFU_VERSION"
run go mod tidy
run go build -trimpath -ldflags "-s -w -X '$MODULE/version.dev=no'" \
  -o "$bin_dir/.tofu.tmp.$$" "$MODULE/cmd/tofu"
mv -f "$bin_dir/.tofu.tmp.$$" "$bin_dir/tofu"
version_ok || die "the built tofu does not report version $TOFU_VERSION"
say "built tofu in $((SECONDS - started)) s"
echo "$bin_dir/tofu"
