#!/usr/bin/env bash
# A moeplan report opened in headless Chromium: the rendered DOM keeps every section, table, chart and chart mark
# of the file, and a screenshot of the page is written. Exit 77 (CTest: skipped) only when no Chromium is installed
# or it cannot start here; scripts/install-deps.sh installs the Debian package `chromium`.
# usage: report_chromium.sh MOEPLAN_BINARY
set -euo pipefail
moeplan=$1
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
if [ -z "$browser" ]; then
  echo "skipped: no chromium on PATH (scripts/install-deps.sh installs the Debian package chromium)"
  exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
flags=(--headless --disable-gpu --no-first-run --no-default-browser-check --disable-dev-shm-usage --hide-scrollbars
       --disable-extensions "--user-data-dir=$work/profile")
[ "$(id -u)" -eq 0 ] && flags+=(--no-sandbox)  # Chromium refuses to run as root with its sandbox

# Chromium itself must start; one that cannot (no usable kernel features in a container) is a skip, not a failure.
if ! timeout 60 "$browser" "${flags[@]}" --dump-dom "data:text/html,<p>ok</p>" >"$work/probe.html" 2>"$work/probe.err" ||
   ! grep -q "<p>ok</p>" "$work/probe.html"; then
  echo "skipped: $browser cannot run here: $(tail -n 1 "$work/probe.err")"
  exit 77
fi

"$moeplan" report --model llama4-maverick --gpus b200 --top 3 -o "$work/report.html"
timeout 60 "$browser" "${flags[@]}" --dump-dom "file://$work/report.html" >"$work/dom.html" 2>"$work/dom.err"

fail() { echo "FAIL: $*"; exit 1; }
count() { grep -o -- "$1" "$2" | wc -l; }
for what in '<svg' 'class="mark' '<table' '<h2>' '<section'; do
  in_file=$(count "$what" "$work/report.html")
  in_dom=$(count "$what" "$work/dom.html")
  echo "$what: file $in_file, rendered DOM $in_dom"
  [ "$in_file" -gt 0 ] || fail "the report has no $what"
  [ "$in_dom" -eq "$in_file" ] || fail "the rendered DOM has $in_dom $what, the file $in_file"
done
grep -q "<h2>Plan (moeplan plan)</h2>" "$work/dom.html" || fail "no plan section in the DOM"
grep -q "parsererror" "$work/dom.html" && fail "Chromium reports a parser error"

timeout 60 "$browser" "${flags[@]}" "--screenshot=$work/report.png" --window-size=1280,2000 "file://$work/report.html" \
  >"$work/shot.out" 2>"$work/shot.err" || fail "screenshot: $(tail -n 1 "$work/shot.err")"
[ -s "$work/report.png" ] || fail "no screenshot written"
[ "$(head -c 8 "$work/report.png" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ] || fail "the screenshot is not a PNG"
size=$(stat -c %s "$work/report.png")
echo "screenshot: $size bytes"
# A blank 1280x2000 page compresses to a few kB; text, tables and charts need far more.
[ "$size" -gt 40000 ] || fail "the screenshot ($size bytes) looks blank"
echo "ok"
