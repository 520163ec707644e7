#!/usr/bin/env bash
# The session docs/verification.md shows, run from scratch in a new folder: the owner trains,
# fingerprints, calibrates and commits; the thief prunes, exports and serves the copy behind a
# token; the verifier checks an API, a budgeted API, an ONNX file and a missing token.
# Prints the transcript as the page shows it (commands with `$`, then their output).
#   bash scripts/verification_session.sh [FOLDER]      # about 5 minutes on 2 CPU cores
set -u
work=${1:-$(mktemp -d)}
mkdir -p "$work" && cd "$work" || exit 2
export MODELPRINT_QUIET=1
trap 'kill $(jobs -p) 2>/dev/null' EXIT

run() {  # the owner's and the thief's steps: only their result lines matter here
    "$@" > /dev/null || { echo "failed: $*" >&2; exit 1; }
}

run modelprint train --data digits:16 --arch cnn --seed 0 --out owner
run modelprint fingerprint create owner.safetensors --method c --seed 0 --out owner.fp.safetensors
run modelprint fingerprint calibrate owner.fp.safetensors --reference-models 10 --out owner.fp.safetensors
commitment=$(modelprint fingerprint commit owner.fp.safetensors)
echo "# $commitment"
run modelprint attack prune owner.safetensors --param rate=0.5 --seed 1 --out stolen
run modelprint export stolen.safetensors --format onnx --out stolen.onnx
run modelprint train --data digits:16 --arch cnn --split attacker --seed 7 --out other
MODELPRINT_SERVE_TOKEN=s3cret modelprint serve stolen.safetensors --port 8765 --labels-only 2> serve-stolen.log &
modelprint serve other.safetensors --port 8766 2> serve-other.log &
for port in 8765 8766; do
    for _ in $(seq 100); do
        python -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null && break
        sleep 0.2
    done
done

show() {  # a verifier's command and what it prints, errors included
    echo "\$ $*"
    bash -c "$*" 2>&1
}
export MODELPRINT_TOKEN=s3cret
echo "\$ export MODELPRINT_TOKEN=s3cret"
show modelprint verify owner.fp.safetensors http://127.0.0.1:8765 --commitment "${commitment%% *}"
show modelprint verify owner.fp.safetensors http://127.0.0.1:8765 --max-queries 100 --fpr 0.01
show modelprint verify owner.fp.safetensors http://127.0.0.1:8766 --max-queries 100 --fpr 0.01
show modelprint verify owner.fp.safetensors stolen.onnx
show MODELPRINT_TOKEN= modelprint verify owner.fp.safetensors http://127.0.0.1:8765
