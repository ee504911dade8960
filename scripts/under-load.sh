#!/usr/bin/env bash
# Run pytest with the machine busy: BURNERS CPU-bound processes (default 2) spin alongside for
# the whole run and are killed when it ends, however it ends (success, failure, Ctrl-C).
# Every argument is passed to pytest unchanged; the exit status is pytest's.
#
#   bash scripts/under-load.sh tests/e2e/test_safety.py -x
#   BURNERS=4 bash scripts/under-load.sh -k ctrl_c tests/e2e
set -euo pipefail
cd "$(dirname "$0")/.."

burners=${BURNERS:-2}
if ! [[ $burners =~ ^[0-9]+$ ]]; then
    echo "under-load.sh: BURNERS must be a whole number, not '$burners'" >&2
    exit 2
fi

pids=()
stop_burners() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    pids=()
}
trap stop_burners EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for ((i = 0; i < burners; i++)); do
    python3 -c 'while True: pass' &
    pids+=("$!")
done
echo "under-load.sh: $burners CPU burner(s) running: ${pids[*]:-none}" >&2

python3 -m pytest -p no:cacheprovider "$@"
