/* bundle_list.c: the list of files a bundle holds, and which names a bundle
 * may hold at all. */
#include <stdlib.h>
#include <string.h>

#include "bundle_int.h"

int bnd_list_add(bnd_list *l, const char *name, const char *src, char *mem, size_t mem_len, pl_err *err) {
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 64;
        bnd_file *v = realloc(l->v, (size_t)cap * sizeof *v);
        if (!v) return pl_err_set(err, PL_ENOMEM, "bundle: out of memory listing files");
        l->v = v;
        l->cap = cap;
    }
    bnd_file *f = &l->v[l->n];
    memset(f, 0, sizeof *f);
    f->name = strdup(name);
    f->src = src ? strdup(src) : NULL;
    if (!f->name || (src && !f->src)) {
        free(f->name);
        free(f->src);
        return pl_err_set(err, PL_ENOMEM, "bundle: out of memory listing files");
    }
    f->mem = mem;
    f->mem_len = mem_len;
    l->n++;
    return PL_OK;
}

static int by_name(const void *a, const void *b) {
    return strcmp(((const bnd_file *)a)->name, ((const bnd_file *)b)->name);
}

void bnd_list_sort(bnd_list *l) {
    if (l->n > 1) qsort(l->v, (size_t)l->n, sizeof *l->v, by_name);
}

/* binary search: the list is sorted */
bnd_file *bnd_list_find(const bnd_list *l, const char *name) {
    int lo = 0, hi = l->n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2, c = strcmp(l->v[mid].name, name);
        if (!c) return &l->v[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

void bnd_list_free(bnd_list *l) {
    for (int i = 0; i < l->n; i++) {
        free(l->v[i].name);
        free(l->v[i].src);
        free(l->v[i].mem);
    }
    free(l->v);
    memset(l, 0, sizeof *l);
}

int bnd_name_ok(const char *name) {
    size_t n = strlen(name);
    if (n == 0 || n > BND_MAX_NAME || name[0] == '/') return 0;
    const char *p = name;
    while (*p) {
        const char *e = strchr(p, '/');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == 0 || (len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.')) return 0;
        for (size_t i = 0; i < len; i++)
            if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f || p[i] == '\\') return 0;
        if (!e) break;
        p = e + 1;
        if (!*p) return 0; /* trailing slash: a directory entry */
    }
    return 1;
}
