/* json.h: cJSON with potluck errors: loading files and typed field access
 * whose messages name the file and the key. */
#ifndef PL_JSON_H
#define PL_JSON_H

#include <stdint.h>
#include <cjson/cJSON.h>
#include "error.h"

/* Parse a JSON file (at most max_bytes). *out must be freed with cJSON_Delete. */
int pl_json_load(const char *path, size_t max_bytes, cJSON **out, pl_err *err);

/* Field getters: missing -> PL_ENOTFOUND, wrong type -> PL_EFORMAT, with
 * messages "<where>: <key>: expected ..., got ...". where is usually the
 * file name. Optional variants leave *out untouched and return 0 when the
 * key is absent or null. */
int pl_json_int(const cJSON *obj, const char *key, const char *where, int64_t *out, pl_err *err);
int pl_json_num(const cJSON *obj, const char *key, const char *where, double *out, pl_err *err);
int pl_json_str(const cJSON *obj, const char *key, const char *where, const char **out, pl_err *err);
int pl_json_bool(const cJSON *obj, const char *key, const char *where, int *out, pl_err *err);
int pl_json_int_opt(const cJSON *obj, const char *key, const char *where, int64_t *out, pl_err *err);
int pl_json_num_opt(const cJSON *obj, const char *key, const char *where, double *out, pl_err *err);
int pl_json_str_opt(const cJSON *obj, const char *key, const char *where, const char **out, pl_err *err);
int pl_json_bool_opt(const cJSON *obj, const char *key, const char *where, int *out, pl_err *err);

/* Serialize and write atomically (pretty-printed, trailing newline). */
int pl_json_write(const char *path, const cJSON *obj, pl_err *err);

#endif
