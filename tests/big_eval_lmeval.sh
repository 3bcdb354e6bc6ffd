#!/usr/bin/env bash
# big_eval_lmeval.sh (make test-big): tests/cli_eval_lmeval.sh on 200 HellaSwag
# items instead of make test's 50.
cd "$(dirname "$0")/.."
POTLUCK_EVAL_PEER_ITEMS=200 exec bash tests/cli_eval_lmeval.sh
