#!/usr/bin/env bash
# CI as it runs on a clean clone: clone this repository's HEAD beside it (so that ../shared resolves as in CI), run
# .ci/run there, and write RESULTS.md here: the date, the commit, the machine, the load average before and after,
# the wall time of the whole of .ci/run (install included), the suite's own time and its counts, the slowest tests.
# Run it alone on the machine: its figures are the README's.
#
#   experiments/ci-run/run.sh            # about 40 minutes on 2 idle cores
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
clone="$(dirname "$repo")/ci-clone-$$"
git clone -q "$repo" "$clone"
commit=$(git -C "$clone" rev-parse --short HEAD)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
start=$(date +%s)
set +e
(cd "$clone" && .ci/run) > "$here/last-run.log" 2>&1
status=$?
set -e
seconds=$(( $(date +%s) - start ))
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
# The suite's line; none when .ci/run stopped before the tests (a lint error): say so, and still write the record.
summary=$(grep -E '^=+ .*(passed|failed).* in [0-9.]+s' "$here/last-run.log" | tail -1 | sed 's/^=* //; s/ =*$//' \
    || true)
summary=${summary:-"did not run (.ci/run stopped before the tests: see last-run.log)"}
{
    echo "# .ci/run on a clean clone"
    echo
    echo "Recorded by \`experiments/ci-run/run.sh\`: a clone of commit $commit, \`.ci/run\` as CI runs it (a fresh"
    echo "virtual environment, the README's set-up commands, ruff, mypy, lint-imports, then \`python -m pytest\`)."
    echo
    echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "- commit: $commit"
    echo "- machine: $(uname -m), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), Python $(python3 -c 'import platform; print(platform.python_version())')"
    echo "- load average before: $load_before; after: $load_after"
    echo "- exit status of .ci/run: $status"
    echo "- wall time of .ci/run, install included: $((seconds / 60)) min $((seconds % 60)) s"
    echo "- the suite: $summary"
    echo
    echo "The slowest tests (pytest's --durations):"
    echo
    echo '```'
    sed -n '/slowest 15 durations/,/durations < /p' "$here/last-run.log" | head -18
    echo '```'
} > "$here/RESULTS.md"
rm -rf "$clone"
echo "written $here/RESULTS.md (exit status of .ci/run: $status)"
exit "$status"
