/* mapfile.h: read-only memory maps of whole files. */
#ifndef PL_MAPFILE_H
#define PL_MAPFILE_H

#include <stddef.h>
#include "error.h"

typedef struct pl_map {
    const unsigned char *data; /* NULL for an empty file */
    size_t size;
} pl_map;

/* Map path read-only. An empty file gives data == NULL, size 0. */
int pl_map_open(pl_map *m, const char *path, pl_err *err);
void pl_map_close(pl_map *m);

/* Pages of a read-only file map that were copied out and will not be read
 * again: drop them from the process's resident set (the whole pages inside
 * [p, p + len); the map stays valid and re-reads the file if touched). */
void pl_map_drop(const void *p, size_t len);

/* Read a whole (small) file into a NUL-terminated malloc'd buffer.
 * Refuses files larger than max_bytes. */
int pl_read_file(const char *path, size_t max_bytes, char **out, size_t *len, pl_err *err);

#endif
