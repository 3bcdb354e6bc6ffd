#!/usr/bin/env bash
# tests/cli_help.sh: every command's --help and the options it parses agree.
#  - each "--option" string literal that cli/cmd_<verb>.c compares argv with
#    (and the flag tables the command uses: trainer/run_cfg.c for train and
#    plan, the Lua limits for run and recipe) appears in that command's --help;
#  - each --option its --help names is parsed: given to the command it is
#    never answered "unknown option".
set -uo pipefail
cd "$(dirname "$0")/.."
source tests/check.sh
BIN=${POTLUCK_BIN:-build/san/potluck}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

# parsed FILE...: the "--x" literals of the files (whole strings only; "--no-"
# is run_cfg's prefix for a boolean's negation)
parsed() { grep -ohE '"--[a-z][a-z0-9-]*"' "$@" | tr -d '"' | grep -vx -- '--no-' | sort -u; }
# helped CMD...: the --options its --help names as its own (lines naming
# another command, "potluck <verb> --x", left out)
helped() {
  "$BIN" "$@" --help 2>&1 | awk -v me="$1" '{ if (match($0, /potluck [a-z-]+ /) && substr($0, RSTART + 8, RLENGTH - 9) != me) next; print }' |
    grep -oE -- '--[a-z][a-z0-9-]*' | sort -u
}

check_cmd() { # NAME "HELP ARGS" BOTH(1: also run each helped option) FILES...
  local name=$1 hargs=$2 both=$3; shift 3
  local h; h=$(helped $hargs)
  local missing=""
  for o in $(parsed "$@"); do
    case $o in --help) continue ;; esac
    grep -qxF -- "$o" <<<"$h" || missing+=" $o"
  done
  [ -z "$missing" ] && ok || fail "$name: parsed but not in --help:$missing"
  [ "$both" = 1 ] || return
  local unknown=""
  for o in $h; do
    case $o in --help|--no-double-quant) continue ;; esac
    local e; e=$(cd "$T" && timeout 20 "$BIN" $hargs "$o" x </dev/null 2>&1 >/dev/null)
    grep -qE -- "unknown (option|or incomplete argument) '?$o'?( |\(|$)" <<<"$e" && unknown+=" $o"
  done
  [ -z "$unknown" ] && ok || fail "$name: in --help but refused:$unknown"
}

check_cmd generate generate 1 cli/cmd_generate.c
check_cmd model "model info" 1 cli/cmd_model.c
check_cmd model-init "model init" 1 cli/cmd_model_init.c
check_cmd tokenize tokenize 1 cli/cmd_tokenize.c
check_cmd export export 1 cli/cmd_export.c
check_cmd import import 1 cli/cmd_import.c
check_cmd template template 1 cli/cmd_template.c
check_cmd train train 1 cli/cmd_train.c trainer/run_cfg.c
check_cmd eval eval 1 cli/cmd_eval.c plugins/sandbox.c
check_cmd report report 1 cli/cmd_report.c
check_cmd run run 1 cli/cmd_run.c cli/recipe_flags.c plugins/sandbox.c
check_cmd recipe "recipe check" 1 cli/cmd_recipe.c cli/recipe_flags.c plugins/sandbox.c
check_cmd data "data build" 0 cli/cmd_data.c   # one --help for every data subcommand
check_summary cli_help
