#!/usr/bin/env bash
# Install substratus and run the quickstart end to end on the local runtime:
# validate, plan, apply (Dataset -> base Model -> trained Model -> ModelServer), a request to the
# running server, and a second plan that shows no changes. Destroy with:
#   substratus destroy -f examples/quickstart --auto-approve
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m pip install --quiet --disable-pip-version-check -e .
substratus() { python3 -m substratus "$@"; }  # works even where pip's script dir is not on PATH

Q=examples/quickstart
substratus validate -f "$Q"
substratus plan -f "$Q" --out "$Q/.substratus.plan.json"
substratus apply "$Q/.substratus.plan.json"

endpoint=$(substratus output -f "$Q" --json | python3 -c \
  'import json,sys; print(json.load(sys.stdin)["modelserver.tuned-ngram"]["endpoint"])')
echo
echo "POST $endpoint/v1/completions"
python3 - "$endpoint" <<'PY'
import json, sys, urllib.request
body = json.dumps({"prompt": "the model", "max_tokens": 16, "seed": 7}).encode()
req = urllib.request.Request(sys.argv[1] + "/v1/completions", data=body, method="POST")
with urllib.request.urlopen(req, timeout=10) as resp:
    answer = json.loads(resp.read())
print(json.dumps(answer, indent=2))
PY
echo
substratus plan -f "$Q" --detailed-exitcode
rm -f "$Q/.substratus.plan.json"
echo
echo "The server keeps running at $endpoint. Remove everything with:"
echo "  substratus destroy -f $Q --auto-approve"
