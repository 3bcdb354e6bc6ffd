#!/usr/bin/env bash
# tests/refs.sh [NAME...]: make sure each peer reference exists under $POTLUCK_REFS.
#
# A reference is what a peer (transformers, torch, llama.cpp, gguf-py, ...)
# computed from fixed inputs: logits, token ids, dequantized values. It is
# computed once per key = sha256(peer requirements, the generating script,
# the script's declared inputs) by tests/interop/NAME.py, into
# $POTLUCK_REFS/NAME-<key>/, and $POTLUCK_REFS/NAME points at the current one.
# A script declares its inputs in lines "# inputs: PATH ..." where PATH may use
# $POTLUCK_SHARED, $POTLUCK_MODEL and $POTLUCK_CACHE; missing inputs are an error.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${POTLUCK_REFS:?}" "${POTLUCK_VENV:?}" "${POTLUCK_SHARED:?}"
PY="$POTLUCK_VENV/bin/python"
mkdir -p "$POTLUCK_REFS"
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  for f in tests/interop/*.py; do
    [ -e "$f" ] || continue
    b=$(basename "$f" .py); case "$b" in _*) continue;; esac
    names+=("$b")
  done
fi
for name in "${names[@]}"; do
  script="tests/interop/$name.py"
  [ -f "$script" ] || { echo "refs: no script $script" >&2; exit 1; }
  inputs=$(sed -n 's/^# inputs: //p' "$script" | envsubst)
  key=$( { cat tests/requirements-peers.txt "$script" tests/interop/_common.py 2>/dev/null;
           for i in $inputs; do
             [ -e "$i" ] || { echo "refs: $name: input $i is missing" >&2; exit 1; }
             sha256sum "$i"; done; } | sha256sum | cut -c1-16)
  dir="$POTLUCK_REFS/$name-$key"
  if [ ! -f "$dir/.done" ]; then
    echo "refs: computing $name (peer run, cached afterwards)"
    rm -rf "$dir.tmp"; mkdir -p "$dir.tmp"
    t0=$(date +%s)
    PYTHONPATH=tests/interop "$PY" "$script" "$dir.tmp" || { echo "refs: $name failed" >&2; exit 1; }
    touch "$dir.tmp/.done"
    rm -rf "$dir"; mv "$dir.tmp" "$dir"
    echo "refs: $name done in $(( $(date +%s) - t0 )) s"
  fi
  ln -sfn "$name-$key" "$POTLUCK_REFS/$name"
done
