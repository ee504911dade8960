#!/usr/bin/env bash
# Build the binaries of the Kubernetes test control plane (tests/support/kube.py) from the Go
# module proxy, into a cache directory outside the repository, keyed by versions:
#
#   etcd v3.6.16, kube-apiserver / kube-controller-manager / kube-scheduler v1.37.2
#   (staging modules v0.37.2), kwok v0.7.0
#
# Output: progress on stderr; the bin directory as the LAST line of stdout. Exit 1 on failure,
# with the failing command and the tail of its output on stderr.
#
# Environment:
#   SUBSTRATUS_KUBE_ASSETS  bin directory to fill (default:
#                           ${XDG_CACHE_HOME:-$HOME/.cache}/substratus/kube/<versions>/bin)
#   KUBEBUILDER_ASSETS      envtest convention: when it holds kube-apiserver and etcd, those two
#                           are symlinked into the bin directory and only the others are built.
#
# Idempotent: a binary that exists and reports the expected version is kept. Each binary is
# written to a temporary file and renamed into place; a lock serialises concurrent runs. Sources
# are assembled in a scratch directory under the cache, never in the repository.
# Needs Go (1.26 builds these versions) and access to the Go module proxy.
set -euo pipefail

K8S_VERSION=v1.37.2
STAGING_VERSION=v0.37.2
ETCD_VERSION=v3.6.16
KWOK_VERSION=v0.7.0

key="k8s-${K8S_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}"
cache_dir="${XDG_CACHE_HOME:-$HOME/.cache}/substratus/kube/$key"
bin_dir="${SUBSTRATUS_KUBE_ASSETS:-$cache_dir/bin}"
scratch="$cache_dir/src"

say() { echo "kube-assets: $*" >&2; }
die() { say "error: $*"; exit 1; }

# run LOGNAME CMD...: run CMD with its output in a log file; on failure show the command and tail.
run() {
  local log="$scratch/logs/$1.log"
  shift
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

# version_ok NAME: the binary in bin_dir exists and reports the pinned version.
version_ok() {
  local exe="$bin_dir/$1" out
  [ -x "$exe" ] || return 1
  out=$("$exe" --version 2>&1) || return 1
  case "$1" in
    etcd) grep -qx "etcd Version: ${ETCD_VERSION#v}" <<<"$out" ;;
    kwok) grep -q "^kwok version ${KWOK_VERSION} " <<<"$out" ;;
    *) grep -qx "Kubernetes ${K8S_VERSION}" <<<"$out" ;;
  esac
}

# install_file SRC NAME: copy SRC to bin_dir/NAME atomically (temporary file + rename).
install_file() {
  local tmp="$bin_dir/.$2.tmp.$$"
  cp "$1" "$tmp"
  chmod 0755 "$tmp"
  mv -f "$tmp" "$bin_dir/$2"
}

command -v go >/dev/null 2>&1 || die "the 'go' command is not on PATH (Go 1.26 or newer is needed)"
mkdir -p "$bin_dir" "$scratch/logs" || die "cannot create $bin_dir and $scratch"
bin_dir=$(cd "$bin_dir" && pwd)  # absolute: the build steps run in other directories
trap 'rm -f "$bin_dir"/.*.tmp.$$' EXIT  # no half-written binary survives a failure

exec 9>"$cache_dir/.lock"
if command -v flock >/dev/null 2>&1; then
  flock -n 9 || { say "another build holds $cache_dir/.lock; waiting"; flock 9; }
else
  say "warning: flock not found; concurrent runs are not serialised"
fi

export GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0
started=$SECONDS

# envtest convention: reuse kube-apiserver and etcd from $KUBEBUILDER_ASSETS when both exist.
if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/kube-apiserver" ] \
  && [ -x "$KUBEBUILDER_ASSETS/etcd" ]; then
  src_dir=$(cd "$KUBEBUILDER_ASSETS" && pwd -P)
  for name in kube-apiserver etcd; do
    if [ "$(readlink "$bin_dir/$name" 2>/dev/null)" != "$src_dir/$name" ]; then
      ln -sfn "$src_dir/$name" "$bin_dir/.$name.tmp.$$"
      mv -Tf "$bin_dir/.$name.tmp.$$" "$bin_dir/$name"
    fi
    say "$name: using $src_dir/$name (KUBEBUILDER_ASSETS)"
  done
  reused=" kube-apiserver etcd "
else
  reused=" "
fi

missing=()
for name in etcd kube-apiserver kube-controller-manager kube-scheduler kwok; do
  [[ "$reused" == *" $name "* ]] && continue
  if version_ok "$name"; then
    say "$name: up to date"
  else
    missing+=("$name")
  fi
done

# kwok: installs directly (its go.mod has no replace directives).
if [[ " ${missing[*]-} " == *" kwok "* ]]; then
  say "building kwok $KWOK_VERSION"
  mkdir -p "$scratch/kwok"
  cd "$scratch/kwok"
  rm -rf gobin
  : >"$scratch/logs/kwok.log"
  GOBIN="$scratch/kwok/gobin" run kwok go install -trimpath "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  install_file gobin/kwok kwok
  version_ok kwok || die "the built kwok does not report version $KWOK_VERSION"
fi

# etcd: a wrapper module around etcdmain (the server module has replace directives).
if [[ " ${missing[*]-} " == *" etcd "* ]]; then
  say "building etcd $ETCD_VERSION"
  rm -rf "$scratch/etcd"
  mkdir -p "$scratch/etcd"
  cd "$scratch/etcd"
  : >"$scratch/logs/etcd.log"
  cat >main.go <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  run etcd go mod init substratus.local/etcd
  run etcd go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  run etcd go mod tidy
  run etcd go build -trimpath -ldflags "-s -w" -o "$bin_dir/.etcd.tmp.$$" .
  mv -f "$bin_dir/.etcd.tmp.$$" "$bin_dir/etcd"
  version_ok etcd || die "the built etcd does not report version $ETCD_VERSION"
fi

# Kubernetes: a wrapper module; every staging module is replaced by its published version.
k8s_cmds=()
for name in kube-apiserver kube-controller-manager kube-scheduler; do
  [[ " ${missing[*]-} " == *" $name "* ]] && k8s_cmds+=("$name")
done
if [ "${#k8s_cmds[@]}" -gt 0 ]; then
  say "building ${k8s_cmds[*]} $K8S_VERSION (staging modules $STAGING_VERSION)"
  rm -rf "$scratch/k8s"
  mkdir -p "$scratch/k8s/out"
  cd "$scratch/k8s"
  : >"$scratch/logs/k8s.log"
  cat >tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
GO
  run k8s go mod init substratus.local/k8s
  run k8s go mod download -json "k8s.io/kubernetes@$K8S_VERSION"
  upstream_gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" \
    | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
  [ -f "$upstream_gomod" ] || die "cannot find the go.mod of k8s.io/kubernetes@$K8S_VERSION"
  staging=$(grep -oE '^[[:space:]]*k8s\.io/[A-Za-z0-9._-]+ => \./staging/' "$upstream_gomod" \
    | awk '{print $1}')
  [ -n "$staging" ] || die "no staging modules found in $upstream_gomod"
  for module in $staging; do
    run k8s go mod edit "-replace=$module=$module@$STAGING_VERSION"
  done
  run k8s go get "k8s.io/kubernetes@$K8S_VERSION"
  run k8s go mod tidy
  minor=$(cut -d. -f2 <<<"$K8S_VERSION")
  ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION"
  ldflags+=" -X k8s.io/component-base/version.gitMajor=1"
  ldflags+=" -X k8s.io/component-base/version.gitMinor=$minor"
  pkgs=()
  for name in "${k8s_cmds[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$name"); done
  run k8s go build -trimpath -ldflags "$ldflags" -o out/ "${pkgs[@]}"
  for name in "${k8s_cmds[@]}"; do
    install_file "out/$name" "$name"
    version_ok "$name" || die "the built $name does not report version $K8S_VERSION"
  done
  rm -rf out
fi

if [ "${#missing[@]}" -gt 0 ]; then
  say "built ${missing[*]} in $((SECONDS - started)) s"
fi
echo "$bin_dir"
