/* cmd_template.h: `potluck template`: show a dataset rendered through a chat template with the trained spans marked. */
#ifndef PL_CMD_TEMPLATE_H
#define PL_CMD_TEMPLATE_H

int cmd_template(int argc, char **argv);

#endif
