#!/usr/bin/env bash
# tests/layering.sh [ROOT]: the house rule (README "Layout"): the source
# folders form a stack, bottom to top
#
#   core -> datasets -> lora -> trainer (with trainer/cpu) -> plugins -> cli
#
# and a file may include only headers of its own layer or of layers below it.
# Every quoted #include of every .c/.h under ROOT's layer folders is resolved
# (relative to the including file, then to ROOT, as the compiler's -I. does);
# an include of a file in a higher layer, or one that resolves to nothing, is
# printed as "FILE:LINE: ..." and makes the exit status 1.
#
# tests/layering.sh --objects BUILD_DIR: the same rule for symbols: every
# undefined pl_/cli_/cmd_ symbol of the object BUILD_DIR/<layer>/X.o of each
# source <layer>/X.c (run from the repository root) must be
# defined by an object of its own layer or a lower one (nm).
set -uo pipefail
LAYERS=(core datasets lora trainer plugins cli)
layer_of() { # path relative to ROOT -> index, or -1 outside the layers
  local top=${1%%/*} i
  for i in "${!LAYERS[@]}"; do [ "${LAYERS[$i]}" = "$top" ] && { echo "$i"; return; }; done
  echo -1
}

if [ "${1:-}" = "--objects" ]; then
  dir=${2:?--objects BUILD_DIR}
  # the objects of the layer's current sources (not stale ones of moved files)
  objs_of() { find "${LAYERS[$1]}" -name '*.c' | sort | while read -r c; do
    [ -f "$dir/${c%.c}.o" ] && echo "$dir/${c%.c}.o"; done; }
  bad=0 defs=$(mktemp)
  trap 'rm -f "$defs"' EXIT
  for i in "${!LAYERS[@]}"; do
    objs_of "$i" | while read -r o; do
      nm --defined-only "$o" | awk -v l="$i" '$2 ~ /^[TDBRV]$/ {print $3, l}'
    done
  done | sort -u >"$defs"
  for i in "${!LAYERS[@]}"; do
    while read -r o; do
      while read -r sym; do
        def=$(awk -v s="$sym" '$1 == s {print $2; exit}' "$defs")
        if [ -n "$def" ] && [ "$def" -gt "$i" ]; then
          echo "${o#"$dir"/}: uses $sym, defined in ${LAYERS[$def]}/ (above ${LAYERS[$i]}/)"
          bad=1
        fi
      done < <(nm --undefined-only "$o" | awk '{print $NF}' | grep -E '^(pl_|cli_|cmd_)')
    done < <(objs_of "$i")
  done
  exit $bad
fi

root=$(cd "${1:-.}" && pwd)
bad=0
while read -r f; do
  rel=${f#"$root"/}
  me=$(layer_of "$rel")
  while IFS=: read -r line inc; do
    d=$(dirname "$f")
    if [ -e "$d/$inc" ]; then t=$(realpath -m "$d/$inc")
    elif [ -e "$root/$inc" ]; then t=$(realpath -m "$root/$inc")
    else echo "$rel:$line: #include \"$inc\" resolves to no file"; bad=1; continue; fi
    trel=${t#"$root"/}
    them=$(layer_of "$trel")
    if [ "$them" -gt "$me" ]; then
      echo "$rel:$line: #include \"$inc\": ${LAYERS[$them]}/ is above ${LAYERS[$me]}/"
      bad=1
    fi
  done < <(grep -nE '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f" | sed -E 's/^([0-9]+):.*"([^"]+)".*/\1:\2/')
done < <(for l in "${LAYERS[@]}"; do [ -d "$root/$l" ] && find "$root/$l" -name '*.[ch]'; done | sort)
exit $bad
