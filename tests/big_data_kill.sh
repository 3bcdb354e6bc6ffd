#!/usr/bin/env bash
# big_data_kill.sh (make test-big): tests/cli_data_kill.sh with 40 kill trials
# instead of make test's 12.
cd "$(dirname "$0")/.."
KILL_TRIALS=40 exec bash tests/cli_data_kill.sh
