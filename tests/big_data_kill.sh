#!/usr/bin/env bash
# big_data_kill.sh (make test-big): tests/cli_data_kill.sh with 40 kill trials
# and 12 replace trials instead of make test's 1 and 1.
cd "$(dirname "$0")/.."
KILL_TRIALS=40 KILL_REPLACE_TRIALS=12 KILL_MIN_MS=5000 KILL_LINES=58000 exec bash tests/cli_data_kill.sh
