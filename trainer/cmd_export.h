/* cmd_export.h: `potluck export` (PEFT adapter, merged Hugging Face directory, GGUF) and `potluck import --peft`. */
#ifndef PL_CMD_EXPORT_H
#define PL_CMD_EXPORT_H

#include "../core/error.h"

int cmd_export(int argc, char **argv);
int cmd_import(int argc, char **argv);

/* The adapter directory of a run: RUN_DIR/final/adapter when final/ is a
 * complete checkpoint, else the newest complete RUN_DIR/checkpoints/step-N/
 * adapter, else RUN_DIR/adapter (written by `potluck import --out`); and
 * the base model named by RUN_DIR/config.json ("model"). Both malloc'd. */
int cli_run_adapter(const char *run_dir, char **adapter, char **model, pl_err *err);

#endif
