/* eval_task.c: multiple-choice task files (lm-eval JSONL, llama.cpp's
 * HellaSwag text), seeded subsets, the items' hash. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/atomic.h"
#include "../core/rng.h"
#include "../core/sha256.h"
#include "eval.h"

#define MAX_TASK_BYTES ((size_t)1 << 30)
#define MAX_CHOICES 64

static void item_free(pl_mc_item *it) {
    free(it->context);
    for (int c = 0; c < it->n_choices; c++) free(it->choices[c]);
    free(it->choices);
    memset(it, 0, sizeof *it);
}

void pl_mc_task_free(pl_mc_task *t) {
    if (!t) return;
    for (int64_t i = 0; i < t->n_items; i++) item_free(&t->items[i]);
    free(t->items);
    free(t->name);
    free(t->format);
    memset(t, 0, sizeof *t);
}

static int push_item(pl_mc_task *t, int64_t *cap, pl_mc_item *it, pl_err *err) {
    if (t->n_items == *cap) {
        int64_t nc = *cap ? *cap * 2 : 256;
        pl_mc_item *ni = realloc(t->items, (size_t)nc * sizeof *ni);
        if (!ni) return pl_err_set(err, PL_ENOMEM, "task: out of memory");
        t->items = ni;
        *cap = nc;
    }
    if (it->index < 0) it->index = t->n_items;
    t->items[t->n_items++] = *it;
    memset(it, 0, sizeof *it);
    return PL_OK;
}

static char *dup_n(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (d) { memcpy(d, s, n); d[n] = 0; }
    return d;
}

/* The item's choices: present, non-empty, and a gold index among them. */
static int check_item(const pl_mc_item *it, const char *what, int64_t line, pl_err *err) {
    if (it->n_choices <= 0) return pl_err_set(err, PL_EFORMAT, "%s:%lld: the item has no choices", what, (long long)line);
    for (int c = 0; c < it->n_choices; c++)
        if (!it->choices[c][0])
            return pl_err_set(err, PL_EFORMAT, "%s:%lld: choice %d is empty", what, (long long)line, c);
    if (it->gold < 0 || it->gold >= it->n_choices)
        return pl_err_set(err, PL_EFORMAT, "%s:%lld: gold %d is not a choice index (0..%d)", what, (long long)line,
                          it->gold, it->n_choices - 1);
    return PL_OK;
}

static const cJSON *first_key(const cJSON *o, const char *const *keys) {
    for (int k = 0; keys[k]; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, keys[k]);
        if (v) return v;
    }
    return NULL;
}

static int parse_jsonl(pl_mc_task *t, const char *what, const char *buf, size_t len, pl_err *err) {
    static const char *const kctx[] = {"context", "query", "ctx", NULL};
    static const char *const kch[] = {"choices", "endings", NULL};
    static const char *const kgold[] = {"gold", "label", NULL};
    int64_t cap = 0, line = 0;
    size_t p = 0;
    int rc = PL_OK;
    pl_mc_item it = {0};
    while (p < len && !rc) {
        size_t e = p;
        while (e < len && buf[e] != '\n') e++;
        line++;
        size_t s = p;
        p = e + 1;
        while (s < e && (buf[s] == ' ' || buf[s] == '\t' || buf[s] == '\r')) s++;
        if (s == e) continue;
        cJSON *j = cJSON_ParseWithLength(buf + s, e - s);
        if (!j || !cJSON_IsObject(j)) {
            cJSON_Delete(j);
            return pl_err_set(err, PL_EFORMAT, "%s:%lld: expected a JSON object per line", what, (long long)line);
        }
        const cJSON *c = first_key(j, kctx), *ch = first_key(j, kch), *g = first_key(j, kgold);
        const cJSON *ix = cJSON_GetObjectItemCaseSensitive(j, "index");
        it.index = cJSON_IsNumber(ix) && ix->valuedouble >= 0 && ix->valuedouble < 9e15 ? (int64_t)ix->valuedouble : -1;
        if (!cJSON_IsString(c)) rc = pl_err_set(err, PL_EFORMAT, "%s:%lld: expected \"context\" (a string)", what, (long long)line);
        else if (!cJSON_IsArray(ch)) rc = pl_err_set(err, PL_EFORMAT, "%s:%lld: expected \"choices\" (a list of strings)", what, (long long)line);
        else if (cJSON_GetArraySize(ch) > MAX_CHOICES)
            rc = pl_err_set(err, PL_ERANGE, "%s:%lld: %d choices, at most %d", what, (long long)line, cJSON_GetArraySize(ch), MAX_CHOICES);
        if (!rc) {
            double gv = NAN;
            if (cJSON_IsNumber(g)) gv = g->valuedouble;
            else if (cJSON_IsString(g)) {
                char *end;
                long v = strtol(g->valuestring, &end, 10);
                if (end != g->valuestring && !*end) gv = (double)v;
            }
            if (!(gv == gv) || gv != (double)(int)gv)
                rc = pl_err_set(err, PL_EFORMAT, "%s:%lld: expected \"gold\" (an integer index)", what, (long long)line);
            it.gold = rc ? 0 : (int)gv;
        }
        if (!rc) {
            it.context = strdup(c->valuestring);
            it.n_choices = 0;
            it.choices = calloc((size_t)cJSON_GetArraySize(ch) + 1, sizeof *it.choices);
            if (!it.context || !it.choices) rc = pl_err_set(err, PL_ENOMEM, "task: out of memory");
            const cJSON *x;
            cJSON_ArrayForEach(x, ch) {
                if (rc) break;
                if (!cJSON_IsString(x)) {
                    rc = pl_err_set(err, PL_EFORMAT, "%s:%lld: choice %d is not a string", what, (long long)line, it.n_choices);
                    break;
                }
                if (!(it.choices[it.n_choices] = strdup(x->valuestring))) rc = pl_err_set(err, PL_ENOMEM, "task: out of memory");
                else it.n_choices++;
            }
        }
        cJSON_Delete(j);
        if (!rc) rc = check_item(&it, what, line, err);
        if (!rc) rc = push_item(t, &cap, &it, err);
        item_free(&it);
    }
    return rc;
}

/* llama.cpp's HellaSwag text: 6 lines per task. */
static int parse_hellaswag(pl_mc_task *t, const char *what, const char *buf, size_t len, pl_err *err) {
    int64_t cap = 0, line = 0;
    size_t p = 0;
    int rc = PL_OK;
    pl_mc_item it = {0};
    while (p < len && !rc) {
        const char *ln[6];
        size_t ll[6];
        int got = 0;
        int64_t first = line + 1;
        while (got < 6 && p < len) {
            size_t e = p;
            while (e < len && buf[e] != '\n') e++;
            size_t n = e - p;
            if (n && buf[p + n - 1] == '\r') n--;
            ln[got] = buf + p;
            ll[got++] = n;
            line++;
            p = e + 1;
        }
        if (got == 1 && ll[0] == 0) break; /* a final blank line */
        if (got < 6)
            return pl_err_set(err, PL_EFORMAT, "%s:%lld: a task needs 6 lines (context, gold, 4 endings), the file ends after %d",
                              what, (long long)first, got);
        char num[16];
        size_t nl = ll[1] < sizeof num - 1 ? ll[1] : sizeof num - 1;
        memcpy(num, ln[1], nl);
        num[nl] = 0;
        char *end;
        long g = strtol(num, &end, 10);
        if (end == num || *end || ll[1] >= sizeof num - 1)
            return pl_err_set(err, PL_EFORMAT, "%s:%lld: expected the gold ending's index (0..3), found '%.*s'", what,
                              (long long)first + 1, (int)(ll[1] > 40 ? 40 : ll[1]), ln[1]);
        it.gold = g < 0 || g > 3 ? -1 : (int)g;
        it.index = -1;
        it.context = dup_n(ln[0], ll[0]);
        it.choices = calloc(4, sizeof *it.choices);
        if (!it.context || !it.choices) rc = pl_err_set(err, PL_ENOMEM, "task: out of memory");
        for (int c = 0; c < 4 && !rc; c++) {
            if (!(it.choices[c] = dup_n(ln[2 + c], ll[2 + c]))) rc = pl_err_set(err, PL_ENOMEM, "task: out of memory");
            else it.n_choices++;
        }
        if (!rc) rc = check_item(&it, what, first, err);
        if (!rc) rc = push_item(t, &cap, &it, err);
        item_free(&it);
    }
    return rc;
}

static const char *base_name(const char *path, size_t *n) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    const char *dot = strrchr(b, '.');
    *n = dot && dot != b ? (size_t)(dot - b) : strlen(b);
    return b;
}

int pl_mc_task_parse(pl_mc_task *t, const char *what, const char *buf, size_t len, pl_err *err) {
    memset(t, 0, sizeof *t);
    size_t s = 0;
    while (s < len && (buf[s] == ' ' || buf[s] == '\t' || buf[s] == '\r' || buf[s] == '\n')) s++;
    if (s == len) return pl_err_set(err, PL_EFORMAT, "%s: no items", what);
    if (memchr(buf, 0, len)) return pl_err_set(err, PL_EFORMAT, "%s: a task file is text; this one holds a NUL byte", what);
    int json = buf[s] == '{';
    size_t bn;
    const char *b = base_name(what, &bn);
    t->name = dup_n(b, bn);
    t->format = strdup(json ? "lm-eval-jsonl" : "llamacpp-hellaswag");
    if (!t->name || !t->format) return pl_err_set(err, PL_ENOMEM, "task: out of memory");
    int rc = json ? parse_jsonl(t, what, buf, len, err) : parse_hellaswag(t, what, buf, len, err);
    if (!rc && t->n_items == 0) rc = pl_err_set(err, PL_EFORMAT, "%s: no items", what);
    if (rc) pl_mc_task_free(t);
    else t->n_file = t->n_items;
    return rc;
}

int pl_mc_task_load(pl_mc_task *t, const char *path, pl_err *err) {
    memset(t, 0, sizeof *t);
    FILE *f = fopen(path, "rb");
    if (!f) return pl_err_set(err, PL_EIO, "%s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    int rc = buf ? PL_OK : pl_err_set(err, PL_ENOMEM, "%s: out of memory", path);
    while (!rc) {
        if (n == cap) {
            if (cap >= MAX_TASK_BYTES) { rc = pl_err_set(err, PL_ERANGE, "%s: larger than 1 GiB", path); break; }
            char *nb = realloc(buf, cap * 2);
            if (!nb) { rc = pl_err_set(err, PL_ENOMEM, "%s: out of memory", path); break; }
            buf = nb;
            cap *= 2;
        }
        size_t k = fread(buf + n, 1, cap - n, f);
        n += k;
        if (k == 0) {
            if (ferror(f)) rc = pl_err_set(err, PL_EIO, "%s: read: %s", path, strerror(errno));
            break;
        }
    }
    fclose(f);
    if (!rc) rc = pl_mc_task_parse(t, path, buf, n, err);
    free(buf);
    return rc;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Stream of the subset permutation (pl_rng streams keep uses apart). */
#define SUBSET_STREAM 0x6576616c7375ULL /* "evalsu" */

int pl_eval_subset(int64_t n, int64_t limit, uint64_t seed, int64_t **out, int64_t *k, pl_err *err) {
    *out = NULL;
    *k = limit <= 0 || limit >= n ? n : limit;
    int64_t *perm = malloc((size_t)(n > 0 ? n : 1) * sizeof *perm);
    if (!perm) return pl_err_set(err, PL_ENOMEM, "task: out of memory");
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    if (*k < n) {
        /* the first `limit` steps of a Fisher-Yates shuffle: a prefix of one permutation */
        for (int64_t i = 0; i < *k; i++) {
            int64_t j = i + (int64_t)pl_rng_below(seed, SUBSET_STREAM, (uint64_t)i, (uint64_t)(n - i));
            int64_t x = perm[i]; perm[i] = perm[j]; perm[j] = x;
        }
        qsort(perm, (size_t)*k, sizeof *perm, cmp_i64);
    }
    *out = perm;
    return PL_OK;
}

int pl_mc_task_limit(pl_mc_task *t, int64_t limit, uint64_t seed, pl_err *err) {
    int64_t n = t->n_items, k;
    if (limit <= 0 || limit >= n) return PL_OK;
    int64_t *perm;
    int rc = pl_eval_subset(n, limit, seed, &perm, &k, err);
    if (rc) return rc;
    pl_mc_item *keep = malloc((size_t)limit * sizeof *keep);
    if (!keep) { free(perm); return pl_err_set(err, PL_ENOMEM, "task: out of memory"); }
    char *used = calloc((size_t)n, 1);
    if (!used) { free(perm); free(keep); return pl_err_set(err, PL_ENOMEM, "task: out of memory"); }
    for (int64_t i = 0; i < limit; i++) { keep[i] = t->items[perm[i]]; used[perm[i]] = 1; }
    for (int64_t i = 0; i < n; i++) if (!used[i]) item_free(&t->items[i]);
    free(t->items);
    t->items = keep;
    t->n_items = limit;
    free(used);
    free(perm);
    return PL_OK;
}

void pl_mc_task_hash(const pl_mc_task *t, char hex[65]) {
    pl_sha256 *h = pl_sha256_new();
    uint8_t d[32];
    for (int64_t i = 0; i < t->n_items; i++) {
        const pl_mc_item *it = &t->items[i];
        char num[64];
        int k = snprintf(num, sizeof num, "%lld\n%d\n%d\n", (long long)it->index, it->gold, it->n_choices);
        pl_sha256_update(h, num, (size_t)k);
        pl_sha256_update(h, it->context, strlen(it->context) + 1);
        for (int c = 0; c < it->n_choices; c++) pl_sha256_update(h, it->choices[c], strlen(it->choices[c]) + 1);
    }
    pl_sha256_final(h, d);
    pl_sha256_hex(d, hex);
}

int pl_mc_task_write_jsonl(const pl_mc_task *t, const char *path, pl_err *err) {
    pl_afile f;
    int rc = pl_afile_open(&f, path, err);
    if (rc) return rc;
    for (int64_t i = 0; i < t->n_items && !rc; i++) {
        const pl_mc_item *it = &t->items[i];
        cJSON *o = cJSON_CreateObject(), *ch = cJSON_CreateArray();
        cJSON_AddNumberToObject(o, "index", (double)it->index);
        cJSON_AddStringToObject(o, "context", it->context);
        for (int c = 0; c < it->n_choices; c++) cJSON_AddItemToArray(ch, cJSON_CreateString(it->choices[c]));
        cJSON_AddItemToObject(o, "choices", ch);
        cJSON_AddNumberToObject(o, "gold", it->gold);
        char *s = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (!s) rc = pl_err_set(err, PL_ENOMEM, "%s: out of memory", path);
        else if (fprintf(f.fp, "%s\n", s) < 0) rc = pl_err_set(err, PL_EIO, "%s: write: %s", path, strerror(errno));
        free(s);
    }
    if (!rc) return pl_afile_commit(&f, err);
    pl_afile_abort(&f);
    return rc;
}
