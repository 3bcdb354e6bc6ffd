/* cmd_tokenize.h: the `potluck tokenize` command (text on stdin -> ids, or ids -> text). */
#ifndef PL_CMD_TOKENIZE_H
#define PL_CMD_TOKENIZE_H

int cmd_tokenize(int argc, char **argv);

#endif
