/* minhash.c: shingling, 64-bit hashing, MinHash signatures and the LSH index (see minhash.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../core/rng.h"
#include "minhash.h"
#include "textqual.h"

#define K0 0x9e3779b97f4a7c15ULL
#define K1 0xbf58476d1ce4e5b9ULL
#define K2 0x94d049bb133111ebULL
#define K3 0xa0761d6478bd642fULL
#define K4 0xe7037ed1a0b428dbULL

static inline uint64_t mum(uint64_t a, uint64_t b) {
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}
static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t load_tail(const unsigned char *p, size_t n, int lower) {
    uint64_t w = 0;
    for (size_t k = 0; k < n; k++) {
        unsigned c = p[k];
        if (lower && c >= 'A' && c <= 'Z') c |= 0x20;
        w |= (uint64_t)c << (8 * k);
    }
    return w;
}

/* The one hash body; lower: fold ASCII A-Z to a-z while reading. */
static uint64_t hash_bytes(const unsigned char *p, size_t len, uint64_t seed, int lower) {
    uint64_t h = seed ^ K0 ^ mum(len ^ K1, K2);
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        if (lower) w = load_tail(p + i, 8, 1);
        else memcpy(&w, p + i, 8);
        h = mum(w ^ K3, h ^ K4) ^ rotl(h, 23);
    }
    if (i < len) h = mum(load_tail(p + i, len - i, lower) ^ K1, h ^ K2) ^ rotl(h, 29);
    h = mum(h ^ K3, (uint64_t)len ^ K4);
    return h ^ (h >> 31);
}

uint64_t pl_hash64(const void *data, size_t len, uint64_t seed) {
    return hash_bytes((const unsigned char *)data, len, seed, 0);
}

uint64_t pl_hash64_fold(uint64_t h, uint64_t v) {
    return mum(h ^ K1, v ^ K2) ^ rotl(h, 17);
}

/* ------------------------------------------------------------ tokens */

static inline int is_word_byte(unsigned c) {
    return c >= 0x80 || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int tokens_push(pl_tokens *t, uint64_t h, size_t off, size_t len, pl_err *err) {
    if (t->n == t->cap) {
        size_t nc = t->cap ? t->cap * 2 : 256;
        uint64_t *nh = realloc(t->hash, nc * sizeof *nh);
        if (nh) t->hash = nh;
        uint32_t *no = realloc(t->off, nc * sizeof *no);
        if (no) t->off = no;
        uint32_t *nl = realloc(t->len, nc * sizeof *nl);
        if (nl) t->len = nl;
        if (!nh || !no || !nl) return pl_err_set(err, PL_ENOMEM, "tokens: out of memory for %zu tokens", nc);
        t->cap = nc;
    }
    t->hash[t->n] = h;
    t->off[t->n] = (uint32_t)off;
    t->len[t->n] = (uint32_t)len;
    t->n++;
    return 0;
}

int pl_tokens_split(pl_tokens *t, const char *text, size_t len, int unit, pl_err *err) {
    const unsigned char *p = (const unsigned char *)text;
    t->n = 0;
    if (len > UINT32_MAX) return pl_err_set(err, PL_EINVAL, "text of %zu bytes: at most 4 GiB is supported", len);
    if (unit == PL_UNIT_CHAR) {
        for (size_t i = 0; i < len;) {
            uint32_t cp;
            size_t n;
            cp = pl_utf8_decode(p + i, len - i, &n);
            if (cp >= 'A' && cp <= 'Z') cp |= 0x20;
            int rc = tokens_push(t, pl_hash64_fold(K3, cp), i, n, err);
            if (rc) return rc;
            i += n;
        }
        return 0;
    }
    for (size_t i = 0; i < len;) {
        if (!is_word_byte(p[i])) {
            i++;
            continue;
        }
        size_t s = i;
        while (i < len && is_word_byte(p[i])) i++;
        int rc = tokens_push(t, hash_bytes(p + s, i - s, K4, 1), s, i - s, err);
        if (rc) return rc;
    }
    return 0;
}

void pl_tokens_free(pl_tokens *t) {
    free(t->hash);
    free(t->off);
    free(t->len);
    memset(t, 0, sizeof *t);
}

uint64_t pl_tokens_gram(const pl_tokens *t, size_t i, size_t n) {
    if (i + n > t->n) n = t->n - i;
    uint64_t h = K2;
    for (size_t k = 0; k < n; k++) h = pl_hash64_fold(h, t->hash[i + k]);
    return pl_hash64_fold(h, n);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int pl_shingles(const char *text, size_t len, int ngram, int unit, uint64_t **out, size_t *n_out, pl_err *err) {
    *out = NULL;
    *n_out = 0;
    if (ngram < 1) return pl_err_set(err, PL_EINVAL, "shingles: ngram must be >= 1, got %d", ngram);
    pl_tokens t = {0};
    int rc = pl_tokens_split(&t, text, len, unit, err);
    if (rc) {
        pl_tokens_free(&t);
        return rc;
    }
    size_t ng = t.n == 0 ? 0 : t.n < (size_t)ngram ? 1 : t.n - (size_t)ngram + 1;
    uint64_t *h = ng ? malloc(ng * sizeof *h) : NULL;
    if (ng && !h) {
        pl_tokens_free(&t);
        return pl_err_set(err, PL_ENOMEM, "shingles: out of memory");
    }
    for (size_t i = 0; i < ng; i++) h[i] = pl_tokens_gram(&t, i, (size_t)ngram);
    pl_tokens_free(&t);
    if (ng) qsort(h, ng, sizeof *h, cmp_u64);
    size_t u = 0;
    for (size_t i = 0; i < ng; i++)
        if (u == 0 || h[i] != h[u - 1]) h[u++] = h[i];
    *out = h;
    *n_out = u;
    return 0;
}

double pl_jaccard_sorted(const uint64_t *a, size_t na, const uint64_t *b, size_t nb) {
    if (na == 0 && nb == 0) return 1.0;
    size_t i = 0, j = 0, inter = 0;
    while (i < na && j < nb) {
        if (a[i] == b[j]) inter++, i++, j++;
        else if (a[i] < b[j]) i++;
        else j++;
    }
    return (double)inter / (double)(na + nb - inter);
}

/* ------------------------------------------------------------ parameters */

void pl_minhash_opts_default(pl_minhash_opts *o) {
    o->num_perm = 128;
    o->threshold = 0.8;
    o->bands = 0;
    o->rows = 0;
    o->ngram = 5;
    o->unit = PL_UNIT_WORD;
    o->seed = 1;
}

/* Composite Simpson of f(s) = collision probability (fp = 1) or its
 * complement (fp = 0) over [lo, hi]. */
static double band_integral(double lo, double hi, int b, int r, int fp) {
    const int n = 512;
    if (hi <= lo) return 0;
    double h = (hi - lo) / n, sum = 0;
    for (int i = 0; i <= n; i++) {
        double s = lo + h * i;
        double miss = pow(1.0 - pow(s, r), b); /* no band collides */
        double f = fp ? 1.0 - miss : miss;
        double w = (i == 0 || i == n) ? 1 : (i & 1) ? 4 : 2;
        sum += w * f;
    }
    return sum * h / 3;
}

void pl_minhash_optimal_param(double threshold, int num_perm, double wfp, double wfn, int *bands, int *rows) {
    double best = INFINITY;
    int bb = 1, br = 1;
    for (int b = 1; b <= num_perm; b++)
        for (int r = 1; r <= num_perm / b; r++) {
            double e = wfp * band_integral(0.0, threshold, b, r, 1) + wfn * band_integral(threshold, 1.0, b, r, 0);
            if (e < best) {
                best = e;
                bb = b;
                br = r;
            }
        }
    *bands = bb;
    *rows = br;
}

/* ------------------------------------------------------------ the index */

typedef struct bucket {
    uint64_t key; /* 0: empty */
    int64_t head; /* first node, -1 none */
} bucket;

typedef struct node {
    int64_t slot, next;
} node;

struct pl_minhash {
    pl_minhash_opts o;
    uint64_t *a, *b;        /* (num_perm) permutation coefficients */
    pl_tokens tok;
    uint64_t *qsig;         /* (num_perm) scratch signature */
    /* inserted documents */
    int64_t *ids;           /* (n) */
    uint32_t *sig32;        /* (n, num_perm) low 32 bits of each signature */
    uint32_t *mark;         /* (n) last query that saw the slot */
    size_t n, cap;
    uint32_t query_no;
    bucket *tab;            /* open addressing, power of two */
    size_t tab_cap, tab_used;
    node *nodes;
    size_t n_nodes, nodes_cap;
    /* query results */
    int64_t *res_id, *res_slot;
    double *res_jac;
    size_t res_n, res_cap;
    int64_t seen;
};

const pl_minhash_opts *pl_minhash_options(const pl_minhash *m) { return &m->o; }
int64_t pl_minhash_seen(const pl_minhash *m) { return m->seen; }
int64_t pl_minhash_size(const pl_minhash *m) { return (int64_t)m->n; }

int pl_minhash_new(pl_minhash **out, const pl_minhash_opts *opts, pl_err *err) {
    *out = NULL;
    pl_minhash_opts o;
    if (opts) o = *opts;
    else pl_minhash_opts_default(&o);
    if (o.num_perm < 1 || o.num_perm > 4096)
        return pl_err_set(err, PL_EINVAL, "minhash: num_perm must be 1..4096, got %d", o.num_perm);
    if (!(o.threshold > 0 && o.threshold <= 1))
        return pl_err_set(err, PL_EINVAL, "minhash: threshold must be in (0, 1], got %g", o.threshold);
    if (o.ngram < 1 || o.ngram > 1024)
        return pl_err_set(err, PL_EINVAL, "minhash: ngram must be 1..1024, got %d", o.ngram);
    if (o.unit != PL_UNIT_WORD && o.unit != PL_UNIT_CHAR)
        return pl_err_set(err, PL_EINVAL, "minhash: unknown unit %d", o.unit);
    if (o.bands == 0 && o.rows == 0) {
        pl_minhash_optimal_param(o.threshold, o.num_perm, 0.5, 0.5, &o.bands, &o.rows);
    } else if (o.bands < 1 || o.rows < 1 || (int64_t)o.bands * o.rows > o.num_perm) {
        return pl_err_set(err, PL_EINVAL, "minhash: bands x rows = %d x %d must be >= 1 each and at most num_perm %d",
                          o.bands, o.rows, o.num_perm);
    }
    pl_minhash *m = calloc(1, sizeof *m);
    if (!m) return pl_err_set(err, PL_ENOMEM, "minhash: out of memory");
    m->o = o;
    m->a = malloc(o.num_perm * sizeof *m->a);
    m->b = malloc(o.num_perm * sizeof *m->b);
    m->qsig = malloc(o.num_perm * sizeof *m->qsig);
    m->tab_cap = 1024;
    m->tab = calloc(m->tab_cap, sizeof *m->tab);
    if (!m->a || !m->b || !m->qsig || !m->tab) {
        pl_minhash_free(m);
        return pl_err_set(err, PL_ENOMEM, "minhash: out of memory");
    }
    for (int p = 0; p < o.num_perm; p++) {
        /* full 64-bit a, b: the multiply-add-shift family (minhash.h) */
        m->a[p] = pl_rng_below(o.seed, 0x6d696e68, 2 * (uint64_t)p, UINT64_MAX);
        m->b[p] = pl_rng_below(o.seed, 0x6d696e68, 2 * (uint64_t)p + 1, UINT64_MAX);
    }
    *out = m;
    return 0;
}

void pl_minhash_free(pl_minhash *m) {
    if (!m) return;
    free(m->a);
    free(m->b);
    free(m->qsig);
    pl_tokens_free(&m->tok);
    free(m->ids);
    free(m->sig32);
    free(m->mark);
    free(m->tab);
    free(m->nodes);
    free(m->res_id);
    free(m->res_slot);
    free(m->res_jac);
    free(m);
}

int pl_minhash_signature(pl_minhash *m, const char *text, size_t len, uint64_t *sig, size_t *n_shingles,
                         pl_err *err) {
    int np = m->o.num_perm;
    for (int p = 0; p < np; p++) sig[p] = PL_MINHASH_EMPTY;
    int rc = pl_tokens_split(&m->tok, text, len, m->o.unit, err);
    if (rc) return rc;
    size_t nt = m->tok.n, ngram = (size_t)m->o.ngram;
    size_t ng = nt == 0 ? 0 : nt < ngram ? 1 : nt - ngram + 1;
    const uint64_t *a = m->a, *b = m->b;
    for (size_t i = 0; i < ng; i++) {
        uint64_t g = pl_tokens_gram(&m->tok, i, ngram);
        uint64_t x = (uint32_t)(g ^ (g >> 32)); /* 32-bit shingle key */
        /* multiply-add-shift: one multiply per permutation, no reduction;
         * the loop has no dependence between p and vectorizes */
        for (int p = 0; p < np; p++) {
            uint64_t v = (a[p] * x + b[p]) >> 32;
            sig[p] = v < sig[p] ? v : sig[p];
        }
    }
    if (n_shingles) *n_shingles = ng;
    return 0;
}

double pl_minhash_jaccard(const uint64_t *a, const uint64_t *b, int num_perm) {
    int eq = 0;
    for (int p = 0; p < num_perm; p++) eq += a[p] == b[p];
    return (double)eq / num_perm;
}

uint64_t pl_minhash_band_key(const pl_minhash *m, const uint64_t *sig, int band) {
    uint64_t h = pl_hash64_fold(K1 ^ (uint64_t)band, (uint64_t)band);
    const uint64_t *v = sig + (size_t)band * m->o.rows;
    for (int k = 0; k < m->o.rows; k++) h = pl_hash64_fold(h, v[k]);
    return h ? h : 1;
}

static int tab_grow(pl_minhash *m, pl_err *err) {
    size_t nc = m->tab_cap * 2;
    bucket *nt = calloc(nc, sizeof *nt);
    if (!nt) return pl_err_set(err, PL_ENOMEM, "minhash: out of memory for %zu buckets", nc);
    for (size_t i = 0; i < m->tab_cap; i++) {
        if (!m->tab[i].key) continue;
        size_t j = (size_t)m->tab[i].key & (nc - 1);
        while (nt[j].key) j = (j + 1) & (nc - 1);
        nt[j] = m->tab[i];
    }
    free(m->tab);
    m->tab = nt;
    m->tab_cap = nc;
    return 0;
}

static bucket *tab_find(const pl_minhash *m, uint64_t key) {
    size_t j = (size_t)key & (m->tab_cap - 1);
    while (m->tab[j].key) {
        if (m->tab[j].key == key) return &m->tab[j];
        j = (j + 1) & (m->tab_cap - 1);
    }
    return &m->tab[j]; /* the empty slot where key would go */
}

static int cmp_res(const void *x, const void *y) {
    int64_t a = ((const int64_t *)x)[0], b = ((const int64_t *)y)[0];
    return a < b ? -1 : a > b;
}

int pl_minhash_query(pl_minhash *m, const uint64_t *sig, const int64_t **ids, const double **jac, size_t *n,
                     pl_err *err) {
    m->res_n = 0;
    if (++m->query_no == 0) { /* wrapped: forget old marks */
        memset(m->mark, 0, m->n * sizeof *m->mark);
        m->query_no = 1;
    }
    int np = m->o.num_perm;
    for (int band = 0; band < m->o.bands; band++) {
        bucket *bk = tab_find(m, pl_minhash_band_key(m, sig, band));
        if (!bk->key) continue;
        for (int64_t nd = bk->head; nd >= 0; nd = m->nodes[nd].next) {
            int64_t slot = m->nodes[nd].slot;
            if (m->mark[slot] == m->query_no) continue;
            m->mark[slot] = m->query_no;
            if (m->res_n == m->res_cap) {
                size_t nc = m->res_cap ? m->res_cap * 2 : 64;
                int64_t *ni = realloc(m->res_id, nc * 2 * sizeof *ni);
                if (!ni) return pl_err_set(err, PL_ENOMEM, "minhash: out of memory");
                m->res_id = ni;
                double *nj = realloc(m->res_jac, nc * sizeof *nj);
                if (!nj) return pl_err_set(err, PL_ENOMEM, "minhash: out of memory");
                m->res_jac = nj;
                m->res_cap = nc;
            }
            /* res_id holds (id, slot) pairs until sorted */
            m->res_id[2 * m->res_n] = m->ids[slot];
            m->res_id[2 * m->res_n + 1] = slot;
            m->res_n++;
        }
    }
    if (m->res_n > 1) qsort(m->res_id, m->res_n, 2 * sizeof(int64_t), cmp_res);
    for (size_t i = 0; i < m->res_n; i++) {
        const uint32_t *s = m->sig32 + (size_t)m->res_id[2 * i + 1] * np;
        int eq = 0;
        for (int p = 0; p < np; p++) eq += s[p] == (uint32_t)sig[p];
        m->res_jac[i] = (double)eq / np;
        m->res_id[i] = m->res_id[2 * i]; /* compact ids in place (i <= 2i) */
    }
    *ids = m->res_id;
    *jac = m->res_jac;
    *n = m->res_n;
    return 0;
}

int pl_minhash_insert(pl_minhash *m, const uint64_t *sig, int64_t id, pl_err *err) {
    int np = m->o.num_perm;
    if (m->n == m->cap) {
        size_t nc = m->cap ? m->cap * 2 : 1024, bytes;
        if (!pl_mul_ok(nc, (size_t)np * sizeof(uint32_t), &bytes))
            return pl_err_set(err, PL_ENOMEM, "minhash: index too large");
        int64_t *ni = realloc(m->ids, nc * sizeof *ni);
        if (ni) m->ids = ni;
        uint32_t *nm = realloc(m->mark, nc * sizeof *nm);
        if (nm) m->mark = nm;
        uint32_t *ns = realloc(m->sig32, bytes);
        if (ns) m->sig32 = ns;
        if (!ni || !nm || !ns) return pl_err_set(err, PL_ENOMEM, "minhash: out of memory for %zu documents", nc);
        m->cap = nc;
    }
    size_t slot = m->n;
    m->ids[slot] = id;
    m->mark[slot] = 0;
    for (int p = 0; p < np; p++) m->sig32[slot * np + p] = (uint32_t)sig[p];
    for (int band = 0; band < m->o.bands; band++) {
        if (2 * (m->tab_used + 1) > m->tab_cap) {
            int rc = tab_grow(m, err);
            if (rc) return rc;
        }
        if (m->n_nodes == m->nodes_cap) {
            size_t nc = m->nodes_cap ? m->nodes_cap * 2 : 4096;
            node *nn = realloc(m->nodes, nc * sizeof *nn);
            if (!nn) return pl_err_set(err, PL_ENOMEM, "minhash: out of memory");
            m->nodes = nn;
            m->nodes_cap = nc;
        }
        uint64_t key = pl_minhash_band_key(m, sig, band);
        bucket *bk = tab_find(m, key);
        if (!bk->key) {
            bk->key = key;
            bk->head = -1;
            m->tab_used++;
        }
        m->nodes[m->n_nodes] = (node){(int64_t)slot, bk->head};
        bk->head = (int64_t)m->n_nodes++;
    }
    m->n++;
    return 0;
}

int pl_minhash_check_add(pl_minhash *m, const char *text, size_t len, int64_t *dup_of, double *jac, pl_err *err) {
    *dup_of = -1;
    if (jac) *jac = 0;
    int rc = pl_minhash_signature(m, text, len, m->qsig, NULL, err);
    if (rc) return rc;
    int64_t id = m->seen++;
    const int64_t *ids;
    const double *js;
    size_t n;
    rc = pl_minhash_query(m, m->qsig, &ids, &js, &n, err);
    if (rc) return rc;
    double best = -1;
    for (size_t i = 0; i < n; i++)
        if (js[i] >= m->o.threshold && js[i] > best) {
            best = js[i];
            *dup_of = ids[i];
        }
    if (*dup_of >= 0) {
        if (jac) *jac = best;
        return 0;
    }
    return pl_minhash_insert(m, m->qsig, id, err);
}

/* ------------------------------------------------------------ in parts */

typedef struct keyed {
    uint64_t key;
    int64_t i;
} keyed;

static int cmp_keyed(const void *x, const void *y) {
    const keyed *a = x, *b = y;
    if (a->key != b->key) return a->key < b->key ? -1 : 1;
    return a->i < b->i ? -1 : a->i > b->i;
}

int pl_minhash_pairs(const pl_minhash *m, const uint64_t *sigs, int64_t n, int part, int nparts, pl_minhash_pair **pairs,
                     size_t *n_pairs, size_t *cap, pl_err *err) {
    int np = m->o.num_perm;
    if (n <= 1) return 0;
    keyed *k = malloc((size_t)n * sizeof *k);
    if (!k) return pl_err_set(err, PL_ENOMEM, "minhash: out of memory for %lld keys", (long long)n);
    for (int band = part; band < m->o.bands; band += nparts) {
        for (int64_t i = 0; i < n; i++) k[i] = (keyed){pl_minhash_band_key(m, sigs + (size_t)i * np, band), i};
        qsort(k, (size_t)n, sizeof *k, cmp_keyed);
        for (int64_t g = 0, e; g < n; g = e) {
            for (e = g + 1; e < n && k[e].key == k[g].key; e++) {}
            for (int64_t b = g + 1; b < e; b++) {
                const uint64_t *si = sigs + (size_t)k[b].i * np;
                for (int64_t a = g; a < b; a++) {
                    const uint64_t *sj = sigs + (size_t)k[a].i * np;
                    int eq = 0;
                    for (int p = 0; p < np; p++) eq += (uint32_t)si[p] == (uint32_t)sj[p];
                    if ((double)eq / np < m->o.threshold) continue;
                    if (*n_pairs == *cap) {
                        size_t nc = *cap ? *cap * 2 : 1024;
                        pl_minhash_pair *np2 = realloc(*pairs, nc * sizeof *np2);
                        if (!np2) { free(k); return pl_err_set(err, PL_ENOMEM, "minhash: out of memory for %zu pairs", nc); }
                        *pairs = np2;
                        *cap = nc;
                    }
                    (*pairs)[(*n_pairs)++] = (pl_minhash_pair){k[b].i, k[a].i, eq, band};
                }
            }
        }
    }
    free(k);
    return 0;
}

static int cmp_pair(const void *x, const void *y) {
    const pl_minhash_pair *a = x, *b = y;
    if (a->i != b->i) return a->i < b->i ? -1 : 1;
    if (a->j != b->j) return a->j < b->j ? -1 : 1;
    return (a->band > b->band) - (a->band < b->band);
}

int pl_minhash_resolve(const pl_minhash *m, pl_minhash_pair *pairs, size_t n_pairs, int64_t n, int64_t *dup_of, double *jac,
                       pl_err *err) {
    (void)err;
    int np = m->o.num_perm;
    for (int64_t i = 0; i < n; i++) { dup_of[i] = -1; jac[i] = 0; }
    if (n_pairs > 1) qsort(pairs, n_pairs, sizeof *pairs, cmp_pair);
    /* ascending i: every j < i is decided when i is; the candidates of i are
     * its pairs with a kept j, by ascending j (as the index's query returns
     * them); the most similar wins, the earliest on ties */
    for (size_t a = 0, e; a < n_pairs; a = e) {
        int64_t i = pairs[a].i;
        double best = -1;
        int64_t dup = -1;
        for (e = a; e < n_pairs && pairs[e].i == i; e++) {
            if (e > a && pairs[e].j == pairs[e - 1].j) continue;
            int64_t j = pairs[e].j;
            if (j < 0 || j >= i || i >= n || dup_of[j] >= 0) continue;
            double js = (double)pairs[e].eq / np;
            if (js >= m->o.threshold && js > best) { best = js; dup = j; }
        }
        if (i >= 0 && i < n && dup >= 0) { dup_of[i] = dup; jac[i] = best; }
    }
    return 0;
}
