/* cmd_export.h: `potluck export` (PEFT adapter, merged Hugging Face directory, GGUF) and `potluck import --peft`. */
#ifndef PL_CMD_EXPORT_H
#define PL_CMD_EXPORT_H

#include "../core/error.h"

int cmd_export(int argc, char **argv);
int cmd_import(int argc, char **argv);

#endif
