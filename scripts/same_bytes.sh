#!/bin/bash
# Same bytes before and after a change: builds the smoke zoo, makes every method's fingerprint
# (tuned, marked, calibrated three ways) and a small bench with the code of BASE (a git
# revision) and with the working tree, and compares: the zoo's models, the fingerprint files
# and results.json (timings aside). About 5 minutes on 2 cores.
#   bash scripts/same_bytes.sh BASE [WORK_DIR]
set -euo pipefail
BASE=${1:?usage: same_bytes.sh BASE_REVISION [WORK_DIR]}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${2:-$(mktemp -d)}
PY=${PYTHON:-$ROOT/.venv/bin/python}
export SOURCE_DATE_EPOCH=0 OMP_NUM_THREADS=1 MODELPRINT_QUIET=1
git -C "$ROOT" worktree add --detach -f "$WORK/base-tree" "$BASE" > /dev/null
trap 'git -C "$ROOT" worktree remove --force "$WORK/base-tree"' EXIT

run() {  # run TREE OUT: everything with TREE's code, the models of the base's zoo
  local tree=$1 out=$2 zoo=$WORK/base/zoo mp="$PY -m modelprint"
  export PYTHONPATH=$tree/src
  mkdir -p "$out/fp"
  $mp zoo build smoke-digits --out "$out/zoo" --workers 0 > "$out/zoo.log" 2>&1
  [ -f "$WORK/gan.safetensors" ] || $mp gan train --data digits --steps 30 --width 16 --seed 0 \
    --out "$WORK/gan.safetensors" > "$out/gan.log" 2>&1
  local src=$zoo/models/cnn_width=8_owner_s0.safetensors
  for m in $($mp list --json 2>/dev/null | $PY -c "import json,sys; print(' '.join(json.load(sys.stdin)['methods']))"); do
    local extra=()
    case $m in
      metafinger|metav) extra=(--param trained="$zoo" --param iterations=5) ;;
      naturalfinger) extra=(--param trained="$zoo" --param gan="$WORK/gan.safetensors" --param iterations=10
                            --param screen_draws=2 --param fill=true) ;;
      dataset-inference*) extra=(--param train_points=40) ;;
      frequency) extra=(--host features.0 --mark epochs=1 --marked-out "$out/fp/marked.safetensors") ;;
    esac
    $mp fingerprint create "$src" --method "$m" --n 12 --seed 3 --out "$out/fp/$m.fp.safetensors" "${extra[@]}" \
      > "$out/fp/$m.log" 2>&1 || echo "$m: $(tail -1 "$out/fp/$m.log")"
  done
  $mp fingerprint create "$src" --method rc --n 12 --seed 3 --tune --reference-models 3 --epochs 1 \
    --out "$out/fp/rc-tuned.fp.safetensors" > "$out/fp/tune.log" 2>&1
  $mp fingerprint calibrate "$out/fp/c.fp.safetensors" --zoo "$zoo" --out "$out/fp/c-zoo.fp.safetensors" > /dev/null 2>&1
  $mp fingerprint calibrate "$out/fp/ltrc.fp.safetensors" --reference-models 6 --epochs 1 --screen 6 \
    --out "$out/fp/ltrc-screened.fp.safetensors" > /dev/null 2>&1
  $mp bench "$zoo" --out "$out/bench" --methods c,ltrc,ipguard,sensitive --n 20 --budgets 10,20 --combine c,ltrc \
    > "$out/bench.log" 2>&1
}

run "$WORK/base-tree" "$WORK/base"
run "$ROOT" "$WORK/head"
$PY - "$WORK/base" "$WORK/head" <<'PYEOF'
import hashlib, json, sys
from pathlib import Path

def strip(o):  # timings and the machine differ between any two runs
    if isinstance(o, dict):
        return {k: strip(v) for k, v in o.items() if k not in ("timings", "machine", "seconds") and not k.endswith("_seconds")}
    return [strip(v) for v in o] if isinstance(o, list) else o

def digests(root, pattern):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.glob(pattern))}

base, head = (Path(a) for a in sys.argv[1:3])
same = True
for what, pattern in (("zoo models", "zoo/models/*.safetensors"), ("fingerprints", "fp/*.safetensors")):
    a, b = digests(base, pattern), digests(head, pattern)
    differ = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    print(f"{what}: {len(a)} files, " + ("identical" if not differ else f"DIFFER: {', '.join(differ)}"))
    same &= not differ
a, b = (strip(json.loads((r / "bench" / "results.json").read_text())) for r in (base, head))
print("bench results.json: " + ("identical (timings aside)" if a == b else "DIFFER"))
sys.exit(0 if same and a == b else 1)
PYEOF
