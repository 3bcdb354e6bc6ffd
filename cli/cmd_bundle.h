/* cmd_bundle.h: the bundle commands (docs/bundles.md): `potluck pack`,
 * `verify`, `unpack`, `inspect`, `keygen`, `reproduce`. */
#ifndef PL_CMD_BUNDLE_H
#define PL_CMD_BUNDLE_H

int cmd_pack(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_unpack(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_keygen(int argc, char **argv);
int cmd_reproduce(int argc, char **argv);

#endif
