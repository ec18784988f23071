#!/usr/bin/env bash
# A bf16 search on MiniLM end to end on a CPU (issue 35): search, dashboard, export with retraining (a saved
# adapter that loads), and `train --config` from the export. Writes end-to-end.log here: the commands, their exit
# status and the precision each step recorded.
#   experiments/precision-cpu/end_to_end.sh [DATA_DIR]        # about 10 minutes on 2 cores (bf16 is slow on a CPU without bf16 instructions)
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
data="${1:-$here/../../../shared/data/glue}"
work="$(mktemp -d /tmp/autopeft-bf16-XXXX)"
log="$here/end-to-end.log"
step() { echo "\$ $*" >> "$log"; "$@" > "$work/out.txt" 2>&1; status=$?; tail -3 "$work/out.txt" >> "$log"; echo "exit $status" >> "$log"; return $status; }
{
    echo "# bf16 end to end on MiniLM; $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git -C "$here" rev-parse --short HEAD),"
    echo "# $(uname -m), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$log"
step autopeft search --task sst2 --data-dir "$data" --space small --trials 2 --max-steps 5 --eval-subset 100 \
    --precision bf16 --out "$work/run" &&
step autopeft dashboard "$work/run" --html "$work/dashboard.html" &&
step autopeft export "$work/run" --retrain --max-steps 5 --data-dir "$data" --out "$work/export" &&
step autopeft train --config "$work/export" --task sst2 --data-dir "$data" --max-steps 5 --out "$work/again" &&
python3 - "$work" >> "$log" <<'PY'
import csv, json, sys
from pathlib import Path
work = Path(sys.argv[1])
rows = list(csv.DictReader((work / "run" / "results.csv").open()))
print("results.csv precision:", sorted({r["precision"] for r in rows if r["status"] == "complete"}))
for name in ("export", "again"):
    meta = json.loads((work / name / "autopeft.json").read_text())
    print(f"{name}/autopeft.json training.precision:", meta["training"]["precision"],
          "retrained accuracy after loading:", meta.get("retrained", {}).get("accuracy_after_loading"))
print("dashboard.html bytes:", (work / "dashboard.html").stat().st_size)
PY
status=$?
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$log"
rm -rf "$work"
cat "$log"
exit $status
