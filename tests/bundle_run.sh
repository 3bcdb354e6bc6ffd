# tests/bundle_run.sh: sourced by the bundle tests: make_run DIR makes a
# small real run directory (a recipe over a text corpus, the tiny random
# Llama GGUF from shared/fixtures, 3 training steps; under a second on the
# optimized build) with its recipe in DIR/rec and the run in DIR/run.
make_run() {
  local d=$1
  mkdir -p "$d/rec"
  python3 - "$d/rec/corpus.txt" <<'PY'
import random, sys
r = random.Random(5)
w = "the cat sat on a mat while rain fell over quiet hills and old roads led home".split()
lines = [" ".join(r.choice(w) for _ in range(r.randint(3, 30))) for _ in range(60)]
lines[10] = lines[3]
lines[20] = "tiny"
open(sys.argv[1], "w").write("\n".join(lines) + "\n")
PY
  cat > "$d/rec/recipe.lua" <<'LUA'
local pl = require "potluck"
return pl.recipe {
  name = "bundle-test", seed = 7, license = "Apache-2.0",
  description = "a tiny run for the bundle tests",
  data = pl.pipeline {
    pl.source.text { path = "corpus.txt", unit = "line" },
    pl.filter.length { min_chars = 10 },
    pl.dedup.exact {},
    pl.split { eval = 0.2 },
  },
  lora = { r = 4, alpha = 8, dropout = 0 },
  train = { steps = 3, lr = 1e-3, seq_len = 64, save_every = 3 },
  eval = { rows = 4 },
  export = { formats = { "peft" } },
}
LUA
  POTLUCK_PLUGINS=$d/no-user-plugins "${POTLUCK_BIN_OPT:-build/opt/potluck}" run "$d/rec/recipe.lua" \
    --base "$TINY" --out "$d/run" --threads 1 >"$d/run.log" 2>&1
}
