#!/usr/bin/env bash
# moeplan report's progress bar: on a terminal, one bar on stderr covers the whole run — the plan's serving checks and
# every section after them — with an ETA, ending at 100 %; off a terminal, stderr stays empty. `script` (util-linux)
# gives the command a pseudo-terminal. Exit 77 (CTest: skipped) only when `script` is not installed.
# usage: report_progress.sh MOEPLAN_BINARY
set -euo pipefail
moeplan=$1
command -v script >/dev/null || { echo "skipped: no script (util-linux) on PATH"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
args=(report --model llama4-maverick --gpus b200 --top 3)

"$moeplan" "${args[@]}" -o "$work/plain.html" 2>"$work/plain.err"
[ ! -s "$work/plain.err" ] || fail "stderr is not a terminal, yet the report wrote: $(head -c 200 "$work/plain.err")"

script -qec "$(printf '%q ' "$moeplan" "${args[@]}" -o "$work/tty.html")" /dev/null >"$work/tty.out"
[ -s "$work/tty.html" ] || fail "no report written under a terminal"
# Frames of the bar: "label [####----] done/total  pct %  ETA m:ss", one per redraw, separated by carriage returns.
tr '\r' '\n' <"$work/tty.out" | grep -E '^report: .* \[[#-]+\] [0-9]+/[0-9]+ ' >"$work/frames" || fail "no progress bar drawn"
echo "$(wc -l <"$work/frames") frames; first: $(head -n 1 "$work/frames"); last: $(tail -n 1 "$work/frames")"
grep -q '^report: plan ' "$work/frames" || fail "no frame while planning"
grep -q '^report: writing ' "$work/frames" || fail "no frame while writing"
grep -qE 'ETA [0-9]+:[0-9]{2}' "$work/frames" || fail "no ETA shown"
last=$(tail -n 1 "$work/frames")
done_units=$(sed -E 's/.*\] ([0-9]+)\/([0-9]+) .*/\1/' <<<"$last")
total_units=$(sed -E 's/.*\] ([0-9]+)\/([0-9]+) .*/\2/' <<<"$last")
[ "$done_units" -eq "$total_units" ] || fail "the last frame is not complete: $last"
grep -q ' 100 % ' <<<"$last" || fail "the last frame is not at 100 %: $last"
# The plan's serving checks are in the same bar: more units than the 8 report steps after the plan.
[ "$total_units" -gt 8 ] || fail "the bar has $total_units units: the plan's serving checks are not counted"
# Done never exceeds total, and never goes back.
awk '{ match($0, /\] [0-9]+\/[0-9]+ /); split(substr($0, RSTART + 2, RLENGTH - 3), n, "/");
       if (n[1] + 0 > n[2] + 0 || n[1] + 0 < prev) { print "bad frame: " $0; exit 1 } prev = n[1] + 0 }' "$work/frames" ||
  fail "a frame counts backwards or beyond its total"
echo "ok: one bar of $total_units units over the plan and the report"
