/* safetensors.h: reading and writing safetensors files, single and sharded.
 *
 * Reading memory-maps each file; the 8-byte header length, the JSON header,
 * every dtype, shape and data_offsets pair are checked against the file size
 * (offsets inside the data section, end - begin == elements * element size,
 * no overflow) before any tensor is exposed. A sharded checkpoint is a
 * directory with model.safetensors.index.json whose weight_map names the
 * shard of every tensor; shard file names must not escape the directory. */
#ifndef PL_SAFETENSORS_H
#define PL_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>
#include "dtype.h"
#include "error.h"

#define PL_ST_MAX_DIMS 8

typedef struct pl_st_tensor {
    char *name;
    pl_dtype dtype;      /* F32, F16, BF16, F64, I8..I64, U8..U64, BOOL */
    int n_dims;
    int64_t shape[PL_ST_MAX_DIMS]; /* shape[0] outermost, as in PyTorch */
    int64_t n_elems;
    size_t nbytes;
    const void *data;    /* into the map of its file */
    int file;            /* index into the shard list */
} pl_st_tensor;

typedef struct pl_st pl_st;

/* path: a .safetensors file; a directory holding model.safetensors.index.json
 * or model.safetensors (or exactly one *.safetensors file); or an index .json. */
int pl_st_open(pl_st **out, const char *path, pl_err *err);
void pl_st_close(pl_st *st);

size_t pl_st_count(const pl_st *st);
const pl_st_tensor *pl_st_at(const pl_st *st, size_t i);
const pl_st_tensor *pl_st_find(const pl_st *st, const char *name); /* NULL if absent */
/* Value of a "__metadata__" string entry of the first file, or NULL. */
const char *pl_st_metadata(const pl_st *st, const char *key);
const char *pl_st_file_path(const pl_st *st, int file);

/* Convert a floating tensor (F32, F16, BF16, F64) to fp32; dst holds n_elems. */
int pl_st_to_f32(const pl_st_tensor *t, float *dst, pl_err *err);

/* Writer: collects tensors (data is referenced, not copied, until the write
 * call returns) and writes them with an 8-byte-aligned header, tensors in
 * the order added. Files are written atomically (temp name, fsync, rename). */
typedef struct pl_st_writer pl_st_writer;
pl_st_writer *pl_st_writer_new(void);
void pl_st_writer_free(pl_st_writer *w);
int pl_st_writer_add(pl_st_writer *w, const char *name, pl_dtype dtype, int n_dims,
                     const int64_t *shape, const void *data, pl_err *err);
int pl_st_writer_meta(pl_st_writer *w, const char *key, const char *value, pl_err *err);
int pl_st_writer_write(pl_st_writer *w, const char *path, pl_err *err);
/* Shards of at most max_shard_bytes of tensor data (a larger tensor gets a
 * shard of its own) named model-00001-of-0000N.safetensors, plus
 * model.safetensors.index.json, in dir (created if missing). With one shard
 * the single file model.safetensors is written and no index. */
int pl_st_writer_write_sharded(pl_st_writer *w, const char *dir, size_t max_shard_bytes,
                               pl_err *err);

#endif
