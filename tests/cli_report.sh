#!/usr/bin/env bash
# tests/cli_report.sh: `potluck report RUN_DIR`.
#  - a small run (tiny model, 12 steps, held-out loss every 4 steps, a
#    4-item multiple-choice task) is reported as one HTML file: the SVG
#    curves (loss with its held-out points, learning rate, throughput,
#    memory), the eval table with base and fine-tuned rows, the resolved
#    recipe and the dataset card; no <script>, no external URL, text from the
#    run escaped;
#  - Debian's chromium (headless) loads it: the DOM it renders holds the
#    SVG curves, its console shows no errors, and a screenshot is taken
#    (kept when POTLUCK_REPORT_SHOT names a file); skipped with a note when
#    chromium is not installed;
#  - a folder that is not a run, and bad arguments: one clean line.
set -u
cd "$(dirname "$0")/.."
source tests/check.sh
BIN=${POTLUCK_BIN:?}
: "${POTLUCK_SHARED:?}"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
TINY=$POTLUCK_SHARED/fixtures/gguf-tiny-llama/llama-2-tiny-random.gguf
mkdir -p "$tmp/rec"
python3 - "$tmp/rec" <<'EOF'
import json, random, sys
d = sys.argv[1]
r = random.Random(5)
words = "the cat sat on a mat while rain fell over quiet hills and old roads led home".split()
open(d + "/corpus.txt", "w").write("\n".join(" ".join(r.choice(words) for _ in range(r.randint(5, 30))) for _ in range(60)) + "\n")
with open(d + "/mc.jsonl", "w") as f:
    for i in range(4):
        f.write(json.dumps({"context": "The cat sat on the <b>", "choices": ["mat", "hat & coat", "rain", "home"], "gold": i}) + "\n")
EOF
cat >"$tmp/rec/recipe.lua" <<'EOF'
local pl = require "potluck"
return pl.recipe {
  name = "report-<test>", seed = 7,
  data = pl.pipeline { pl.source.text { path = "corpus.txt", unit = "line" }, pl.split { eval = 0.2 } },
  lora = { r = 4, alpha = 8, dropout = 0 },
  train = { steps = 12, lr = 3e-3, seq_len = 64, save_every = 12 },
  eval = { rows = 4, every = 4, tasks = { "mc.jsonl" } },
  export = { formats = { "peft" } },
}
EOF
"$BIN" run "$tmp/rec/recipe.lua" --out "$tmp/run" --base "$TINY" >"$tmp/run.out" 2>&1 || fail "run: $(tail -5 "$tmp/run.out")"
"$BIN" report "$tmp/run" >"$tmp/rep.out" 2>&1 && [ -s "$tmp/run/report.html" ] && ok || fail "report: $(cat "$tmp/rep.out")"
H=$tmp/run/report.html
python3 - "$H" <<'EOF' && ok || fail "report.html content"
import re, sys
h = open(sys.argv[1], encoding="utf-8").read()
for id_ in ("loss", "lr", "throughput", "memory"):
    assert '<svg id="%s"' % id_ in h, id_
assert h.count("<polyline") >= 4 and h.count("<circle") >= 3, "curves / held-out points"
assert '<table id="eval">' in h and "<td>fine-tuned</td>" in h and "<td>base</td>" in h
assert '<pre id="recipe">' in h and '<pre id="card">' in h
assert "report-&lt;test&gt;" in h and "<test>" not in h, "recipe name not escaped"
assert "<script" not in h.lower()
urls = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', h)
assert not urls, urls
assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", h), "external URL"
EOF
if command -v chromium >/dev/null 2>&1; then
  shot=${POTLUCK_REPORT_SHOT:-$tmp/shot.png}
  timeout 120 chromium --headless --no-sandbox --disable-gpu --user-data-dir="$tmp/chrome" --enable-logging=stderr --v=0 \
    --window-size=1000,2600 --screenshot="$shot" "file://$H" >"$tmp/c1.out" 2>"$tmp/c1.err"
  [ -s "$shot" ] && ok || fail "chromium wrote no screenshot: $(tail -3 "$tmp/c1.err")"
  timeout 120 chromium --headless --no-sandbox --disable-gpu --user-data-dir="$tmp/chrome" --enable-logging=stderr --v=0 \
    --dump-dom "file://$H" >"$tmp/dom.html" 2>"$tmp/c2.err"
  n=$(grep -o '<svg id="[a-z]*"' "$tmp/dom.html" | wc -l)
  [ "$n" -ge 4 ] && grep -q '<polyline' "$tmp/dom.html" && ok || fail "chromium's DOM has $n SVG charts"
  if grep -hiE 'CONSOLE.*(error|uncaught)|Refused to' "$tmp/c1.err" "$tmp/c2.err" >"$tmp/console.txt"; then
    fail "chromium console: $(head -5 "$tmp/console.txt")"
  else ok; fi
  echo "note: chromium rendered the report ($(chromium --version 2>/dev/null | head -1)); screenshot $(stat -c %s "$shot") bytes"
else
  echo "note: chromium is not installed: the browser check is skipped (make deps installs it)"
fi
expect_clean_error "not a run" "$BIN" report "$tmp/rec"
expect_clean_error "no RUN_DIR" "$BIN" report
expect_clean_error "unknown option" "$BIN" report "$tmp/run" --frob
check_summary cli_report
