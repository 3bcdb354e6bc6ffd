#!/usr/bin/env bash
# big_export_quant.sh (make test-big): tests/cli_export_quant.sh with all 12
# GGUF types instead of make test's 2.
cd "$(dirname "$0")/.."
EXPORT_QUANT_ALL=1 exec bash tests/cli_export_quant.sh
