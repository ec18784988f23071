#!/usr/bin/env bash
# The GPU check in one command (see check.py's docstring): run from the repository root or anywhere.
#   experiments/gpu-check/run.sh [--data-dir DIR] [--dry-run] [--only STAGE,...] [--out FILE]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python3}"
if [ -x "$here/../../.venv/bin/python" ] && [ -z "${PYTHON:-}" ]; then python="$here/../../.venv/bin/python"; fi
exec "$python" "$here/check.py" "$@"
