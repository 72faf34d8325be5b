#!/usr/bin/env bash
# Retention smoke check, as run by CI: build a journal from the shipped samples,
# run a dry-run retention under the debug runner, and record any process that
# still has a file in the journal directory open.
#
# Usage: scripts/retention-smoke.sh [OUTPUT_DIR]   (default: smoke-artifacts)
# Writes smoke.out, smoke.err and, when a process still holds a file, lsof.txt.
set -euo pipefail
out=${1:-smoke-artifacts}
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
db="$out/db"
rm -rf "$db"

journal import "$db" "$root"/samples/*/* >"$out/import.out" 2>"$out/import.err"

status=0
journal debug-run --timeout-seconds 60 -- \
    journal retention --db-path "$db" --days 1 --dry-run --json \
    >"$out/smoke.out" 2>"$out/smoke.err" || status=$?
echo "debug-run exit code: $status" >>"$out/smoke.err"

if command -v lsof >/dev/null 2>&1; then
    # lsof exits 1 when no process has a file open there, which is the good case.
    if lsof +D "$db" >"$out/lsof.txt" 2>/dev/null; then
        echo "processes still hold files in $db; see $out/lsof.txt" >&2
    else
        rm -f "$out/lsof.txt"
    fi
else
    echo "lsof is not installed; open files were not checked" >>"$out/smoke.err"
fi

cat "$out/smoke.out"
if [ "$status" -ne 0 ]; then
    echo "retention smoke failed with exit code $status; see $out/smoke.err" >&2
    cat "$out/smoke.err" >&2
    exit "$status"
fi
grep -q '"dry_run":true' "$out/smoke.out" || {
    echo "retention smoke printed no JSON summary" >&2
    exit 1
}
