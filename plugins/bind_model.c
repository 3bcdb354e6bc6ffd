/* bind_model.c: model handles for Lua plugins: batched generation (raw text
 * or chat messages through the model's template), perplexity, token counts. */
#include "bind_model.h"

#include <lauxlib.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../core/dist.h"
#include "../core/sha256.h"
#include "../datasets/chat.h"
#include "../datasets/tokenizer.h"
#include "../trainer/eval.h"
#include "../trainer/generate.h"
#include "../trainer/model.h"
#include "sandbox.h"

#define MODEL_MT "potluck.model"
#define JOB_MT "potluck.model.job"
#define SEED_KEY "potluck.model.default_seed"
#define MAX_STOP_IDS 16

typedef struct lmodel {
    char *path, *name;
    char *adapter;           /* PEFT adapter merged at load, or NULL */
    int state;               /* 0 not loaded, 1 loaded, -1 load failed */
    pl_err load_err;
    pl_model *m;
    pl_tokenizer *tok;
    int32_t stops[MAX_STOP_IDS];
    int n_stop;
} lmodel;

/* ------------------------------------------------------------------ jobs
 * Every C allocation a method makes hangs off a job userdata pushed first,
 * so a Lua error raised half way (a bad argument, the memory cap) leaks
 * nothing: the job's __gc frees what the method did not. */
typedef struct seqbuf {
    char *s;
    size_t len, cap;
    int32_t prev;
    long cut;  /* byte offset of the first stop string, -1 when none */
} seqbuf;

typedef struct job {
    void **ptrs;
    int n, cap;
    pl_kvcache kv;
    int has_kv;
    seqbuf *bufs;   /* generation text buffers (grown by the token callback) */
    int n_bufs;
} job;

static void job_release(job *j) {
    for (int i = 0; i < j->n; i++) free(j->ptrs[i]);
    free(j->ptrs);
    j->ptrs = NULL;
    j->n = j->cap = 0;
    if (j->has_kv) pl_kvcache_free(&j->kv);
    j->has_kv = 0;
    for (int i = 0; i < j->n_bufs; i++) free(j->bufs[i].s);
    free(j->bufs);
    j->bufs = NULL;
    j->n_bufs = 0;
}

static int job_gc(lua_State *L) {
    job *j = luaL_checkudata(L, 1, JOB_MT);
    job_release(j);
    return 0;
}

static job *job_push(lua_State *L) {
    job *j = lua_newuserdatauv(L, sizeof *j, 0);
    memset(j, 0, sizeof *j);
    if (luaL_newmetatable(L, JOB_MT)) {
        lua_pushcfunction(L, job_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushliteral(L, "locked");
        lua_setfield(L, -2, "__metatable");
    }
    lua_setmetatable(L, -2);
    return j;
}

/* Take ownership of p (freed with the job); frees p and raises on failure. */
static void *job_own(lua_State *L, job *j, void *p) {
    if (!p) luaL_error(L, "out of memory");
    if (j->n == j->cap) {
        int nc = j->cap ? j->cap * 2 : 16;
        void **np = realloc(j->ptrs, (size_t)nc * sizeof *np);
        if (!np) {
            free(p);
            luaL_error(L, "out of memory");
        }
        j->ptrs = np;
        j->cap = nc;
    }
    j->ptrs[j->n++] = p;
    return p;
}

static void *job_calloc(lua_State *L, job *j, size_t n, size_t size) {
    return job_own(L, j, calloc(n ? n : 1, size ? size : 1));
}

/* ----------------------------------------------------------------- model */

static lmodel *check_model(lua_State *L, int idx) {
    return luaL_checkudata(L, idx, MODEL_MT);
}

static int model_gc(lua_State *L) {
    lmodel *lm = luaL_checkudata(L, 1, MODEL_MT);
    pl_tokenizer_free(lm->tok);
    pl_model_free(lm->m);
    free(lm->path);
    free(lm->name);
    free(lm->adapter);
    memset(lm, 0, sizeof *lm);
    lm->state = -1;
    pl_err_set(&lm->load_err, PL_EINVAL, "model handle was freed");
    return 0;
}

/* End-of-turn tokens chat templates close a turn with (as `potluck generate
 * --chat` stops at). */
static const char *const eot_texts[] = {"<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", NULL};

static int lmodel_load(lmodel *lm, pl_err *err) {
    if (lm->state == 1) return 0;
    if (lm->state < 0) {
        if (err) *err = lm->load_err;
        return lm->load_err.code ? lm->load_err.code : PL_EINVAL;
    }
    pl_err e = {0};
    int rc = pl_model_load(&lm->m, lm->path, NULL, &e);
    if (!rc) rc = pl_model_tokenizer(lm->m, NULL, &lm->tok, &e);
    if (!rc && lm->adapter) rc = pl_eval_apply_adapter(lm->m, lm->adapter, &e);
    if (!rc && pl_tokenizer_vocab(lm->tok) > lm->m->cfg.vocab)
        rc = pl_err_set(&e, PL_EFORMAT, "%s: the tokenizer has %d tokens but the model only %d", lm->path,
                        pl_tokenizer_vocab(lm->tok), lm->m->cfg.vocab);
    if (rc) {
        pl_tokenizer_free(lm->tok);
        pl_model_free(lm->m);
        lm->tok = NULL;
        lm->m = NULL;
        lm->state = -1;
        lm->load_err = e;
        pl_err_prefix(&lm->load_err, "model %s", lm->name);
        if (err) *err = lm->load_err;
        return rc;
    }
    int eos = lm->m->cfg.eos_id >= 0 ? lm->m->cfg.eos_id : pl_tokenizer_eos(lm->tok);
    lm->n_stop = 0;
    for (int k = 0; eot_texts[k]; k++) {
        int id = pl_tokenizer_find(lm->tok, eot_texts[k]);
        if (id >= 0 && id != eos) lm->stops[lm->n_stop++] = id;
    }
    if (eos >= 0) lm->stops[lm->n_stop++] = eos;
    if (lm->m->source == PL_SRC_LLAMA2C && pl_tokenizer_bos(lm->tok) >= 0) lm->stops[lm->n_stop++] = pl_tokenizer_bos(lm->tok);
    lm->state = 1;
    return 0;
}

/* The loaded model at idx, or a Lua error. */
static lmodel *need_model(lua_State *L, int idx) {
    lmodel *lm = check_model(L, idx);
    pl_err err = {0};
    if (lmodel_load(lm, &err)) luaL_error(L, "%s", err.msg);
    return lm;
}

int pl_lua_model_load(lua_State *L, int idx, pl_err *err) {
    lmodel *lm = luaL_testudata(L, idx, MODEL_MT);
    if (!lm) return pl_err_set(err, PL_EINVAL, "pl_lua_model_load: stack index %d is not a model handle", idx);
    return lmodel_load(lm, err);
}

void pl_lua_model_set_default_seed(lua_State *L, lua_Integer seed) {
    lua_pushinteger(L, seed);
    lua_setfield(L, LUA_REGISTRYINDEX, SEED_KEY);
}

/* ---------------------------------------------------------------- opts */

/* #t of the list at idx, within 0..2^24. */
static int list_len(lua_State *L, int idx, const char *what) {
    lua_Integer n = luaL_len(L, idx);
    if (n < 0 || n > (1 << 24)) luaL_error(L, "%s: expected a list of at most 2^24 items, got length %I", what, (LUAI_UACINT)n);
    return (int)n;
}

static lua_Integer opt_int(lua_State *L, int t, const char *k, lua_Integer def, lua_Integer lo, lua_Integer hi) {
    if (t == 0) return def;
    lua_getfield(L, t, k);
    if (lua_isnil(L, -1)) { lua_pop(L, 1); return def; }
    int ok;
    lua_Integer v = lua_tointegerx(L, -1, &ok);
    if (!ok) luaL_error(L, "m:generate: opts.%s: expected an integer, got %s", k, luaL_typename(L, -1));
    if (v < lo || v > hi)
        luaL_error(L, "m:generate: opts.%s: expected %I..%I, got %I", k, (LUAI_UACINT)lo, (LUAI_UACINT)hi, (LUAI_UACINT)v);
    lua_pop(L, 1);
    return v;
}

static double opt_num(lua_State *L, int t, const char *k, double def, double lo, double hi) {
    if (t == 0) return def;
    lua_getfield(L, t, k);
    if (lua_isnil(L, -1)) { lua_pop(L, 1); return def; }
    int ok;
    double v = lua_tonumberx(L, -1, &ok);
    if (!ok) luaL_error(L, "m:generate: opts.%s: expected a number, got %s", k, luaL_typename(L, -1));
    if (!(v >= lo && v <= hi)) luaL_error(L, "m:generate: opts.%s: expected %f..%f, got %f", k, lo, hi, v);
    lua_pop(L, 1);
    return v;
}

/* ------------------------------------------------------------- prompts */

/* Token ids of a rendered conversation (the model's chat template, ChatML
 * when it has none but has <|im_start|>), with the assistant prompt, as
 * `potluck generate --chat` renders its prompt. */
static int encode_chat(const lmodel *lm, const char *const *roles, const char *const *contents, int nmsg,
                       int32_t **ids, int *n, pl_err *err) {
    pl_chat c = {0};
    int rc = 0;
    for (int i = 0; i < nmsg && !rc; i++) rc = pl_chat_add(&c, roles[i], contents[i], err);
    if (!rc) rc = pl_chat_encode_prompt(lm->tok, &c, ids, n, err);
    if (rc && rc == PL_EUNSUPPORTED) pl_err_prefix(err, "give raw text prompts instead of messages");
    pl_chat_clear(&c);
    return rc;
}

/* A string field of a message table (raw access: no metamethods run). */
static const char *msg_field(lua_State *L, int msg, const char *k, int pi, int mi) {
    lua_pushstring(L, k);
    lua_rawget(L, msg);
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "m:generate: prompt %d: message %d: %s: expected a string, got %s", pi, mi, k,
                   luaL_typename(L, -1));
    const char *s = lua_tostring(L, -1); /* anchored by the message table */
    lua_pop(L, 1);
    return s;
}

/* Encode prompts[i] (stack index tbl) into (*ids, *n), owned by j. */
static void encode_prompt(lua_State *L, job *j, lmodel *lm, int tbl, int i, int32_t **ids, int *n) {
    pl_err err = {0};
    int rc;
    lua_rawgeti(L, tbl, i);
    int top = lua_gettop(L);
    if (lua_type(L, -1) == LUA_TSTRING) {
        size_t len;
        const char *s = lua_tolstring(L, -1, &len);
        rc = pl_tokenizer_encode(lm->tok, s, len, pl_tokenizer_add_bos(lm->tok), 0, ids, n, &err);
    } else if (lua_type(L, -1) == LUA_TTABLE) {
        int nmsg = list_len(L, top, "m:generate: messages");
        if (nmsg < 1) luaL_error(L, "m:generate: prompt %d: expected a non-empty list of messages", i);
        const char **roles = job_calloc(L, j, (size_t)nmsg, sizeof *roles);
        const char **contents = job_calloc(L, j, (size_t)nmsg, sizeof *contents);
        for (int k = 1; k <= nmsg; k++) {
            lua_rawgeti(L, top, k);
            if (!lua_istable(L, -1))
                luaL_error(L, "m:generate: prompt %d: message %d: expected a table {role=, content=}, got %s", i, k,
                           luaL_typename(L, -1));
            int mt = lua_gettop(L);
            roles[k - 1] = msg_field(L, mt, "role", i, k);
            contents[k - 1] = msg_field(L, mt, "content", i, k);
            lua_pop(L, 1);
        }
        rc = encode_chat(lm, roles, contents, nmsg, ids, n, &err);
    } else {
        return (void)luaL_error(L, "m:generate: prompt %d: expected a string or a list of messages, got %s", i,
                                luaL_typename(L, -1));
    }
    if (rc) luaL_error(L, "m:generate: prompt %d: %s", i, err.msg);
    job_own(L, j, *ids);
    if (*n == 0) luaL_error(L, "m:generate: prompt %d is empty and the vocabulary adds no BOS; give some text", i);
    if (*n >= lm->m->cfg.max_seq)
        luaL_error(L, "m:generate: prompt %d has %d tokens, the model's context is %d", i, *n, lm->m->cfg.max_seq);
    lua_pop(L, 1);
}

/* ------------------------------------------------------------ generate */

typedef struct gen_cb_ctx {
    const pl_tokenizer *tok;
    seqbuf *bufs;       /* this chunk's sequences */
    const char *const *stop;
    const size_t *stop_len;
    int n_stop;
    int oom;
    char *piece;
    size_t piece_cap;
} gen_cb_ctx;

/* Append each new token's text; stop the sequence at the first stop string. */
static int on_token(void *p, int seq, int32_t t) {
    gen_cb_ctx *c = p;
    seqbuf *b = &c->bufs[seq];
    int k = pl_tokenizer_decode(c->tok, b->prev, t, 0, c->piece, c->piece_cap);
    b->prev = t;
    if (k <= 0) return 0;
    if (b->len + (size_t)k + 1 > b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 256;
        while (nc < b->len + (size_t)k + 1) nc *= 2;
        char *ns = realloc(b->s, nc);
        if (!ns) { c->oom = 1; return 1; }
        b->s = ns;
        b->cap = nc;
    }
    size_t before = b->len;
    memcpy(b->s + b->len, c->piece, (size_t)k);
    b->len += (size_t)k;
    b->s[b->len] = 0;
    long best = -1;
    for (int i = 0; i < c->n_stop; i++) {
        size_t sl = c->stop_len[i];
        if (sl == 0 || sl > b->len) continue;
        /* an occurrence not seen before ends inside the new bytes */
        size_t from = before + 1 > sl ? before + 1 - sl : 0;
        const char *hit = memmem(b->s + from, b->len - from, c->stop[i], sl);
        if (hit && (best < 0 || hit - b->s < best)) best = (long)(hit - b->s);
    }
    if (best >= 0) {
        b->cut = best;
        return 1;
    }
    return 0;
}

/* Length of the valid UTF-8 sequence at s (n bytes available), 0 if invalid,
 * -1 if truncated by the end of the buffer. */
static int utf8_seq(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    int len;
    unsigned min;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; min = 0x10000; }
    else return 0;
    unsigned cp = c & (0x3F >> (len - 1));
    for (int i = 1; i < len; i++) {
        if ((size_t)i >= n) return -1;
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

/* Push s[0..n) as valid UTF-8: an incomplete character at the end (cut by
 * max_tokens) is dropped, any other invalid byte becomes U+FFFD. */
static void push_utf8(lua_State *L, job *j, const char *s, size_t n) {
    unsigned char *o = job_calloc(L, j, n * 3 + 1, 1);
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        int l = utf8_seq((const unsigned char *)s + i, n - i);
        if (l < 0) break;
        if (l == 0) {
            memcpy(o + k, "\xEF\xBF\xBD", 3);
            k += 3;
            i++;
            continue;
        }
        memcpy(o + k, s + i, (size_t)l);
        k += (size_t)l;
        i += (size_t)l;
    }
    lua_pushlstring(L, (const char *)o, k);
}

/* ---------------------------------------------------------- generation split over ranks */

static int g_split_rank = 0, g_split_size = 1;

void pl_lua_model_split_calls(int rank, int size) {
    g_split_rank = size > 1 ? rank : 0;
    g_split_size = size > 1 ? size : 1;
}

/* The call's fingerprint: every prompt's tokens and every option that
 * shapes the outputs. */
static void call_hash(int n, int32_t *const *ids, const int *n_ids, int max_tokens, const pl_sampler *sp, int batch,
                      uint64_t stream0, int n_stop, const char *const *stop, const size_t *stop_len, uint8_t out[32]) {
    pl_sha256 *h = pl_sha256_new();
    if (!h) { memset(out, 0, 32); return; }
    int64_t head[4] = {n, max_tokens, batch, (int64_t)stream0};
    pl_sha256_update(h, head, sizeof head);
    double smp[3] = {sp->temperature, sp->top_p, (double)sp->top_k};
    pl_sha256_update(h, smp, sizeof smp);
    pl_sha256_update(h, &sp->seed, sizeof sp->seed);
    for (int i = 0; i < n; i++) {
        pl_sha256_update(h, &n_ids[i], sizeof n_ids[i]);
        pl_sha256_update(h, ids[i], (size_t)n_ids[i] * sizeof **ids);
    }
    pl_sha256_update(h, &n_stop, sizeof n_stop);
    for (int i = 0; i < n_stop; i++) {
        uint64_t l = stop_len[i];
        pl_sha256_update(h, &l, sizeof l);
        pl_sha256_update(h, stop[i], stop_len[i]);
    }
    pl_sha256_final(h, out);
}

static void put_u32(char **p, uint32_t v) { memcpy(*p, &v, 4); *p += 4; }
static uint32_t get_u32(const char *p) { uint32_t v; memcpy(&v, p, 4); return v; }

/* A sequence's text: up to its first stop string. */
static size_t seq_text_len(const seqbuf *b) { return b->cut >= 0 ? (size_t)b->cut : b->len; }

/* Every rank's texts of a split call (this rank's: texts lo..hi-1, as
 * generated), in prompt order: the request through the parent, the answer
 * checked against the shards. all[i], all_len[i]: into the answer (the job's). */
static void split_exchange(lua_State *L, job *j, int n, int lo, int hi, const seqbuf *bufs, const uint8_t hash[32],
                           const char **all, size_t *all_len) {
    size_t bytes = PL_CALLS_HEADER + 4;
    for (int i = lo; i < hi; i++) bytes += 4 + seq_text_len(&bufs[i]);
    char *req = job_calloc(L, j, bytes, 1), *p = req;
    put_u32(&p, PL_CALLS_REQUEST);
    memcpy(p, hash, 32);
    p += 32;
    put_u32(&p, (uint32_t)(hi - lo));
    for (int i = lo; i < hi; i++) {
        size_t len = seq_text_len(&bufs[i]);
        put_u32(&p, (uint32_t)len);
        if (len) memcpy(p, bufs[i].s, len);
        p += len;
    }
    pl_err err = {0};
    size_t rn = 0;
    char *got = NULL;
    if (pl_child_call(req, bytes, &got, &rn, &err)) luaL_error(L, "m:generate (split over %d ranks): %s", g_split_size, err.msg);
    char *reply = job_calloc(L, j, rn + 1, 1); /* the job's, so a Lua error below frees it */
    memcpy(reply, got, rn);
    free(got);
    /* the answer: u32 P, P u64 lengths, the parts: each u32 count and count (u32 length, bytes) */
    const char *r = reply, *end = reply + rn;
    int bad = rn < 4 || (int)get_u32(r) != g_split_size;
    const char *q = r + 4 + (size_t)g_split_size * 8;
    bad = bad || q > end;
    for (int k = 0, at = 0; k < g_split_size && !bad; k++) {
        uint64_t plen;
        memcpy(&plen, r + 4 + (size_t)k * 8, 8);
        const char *pe = q + plen;
        int want = (int)(pl_dist_shard_lo((size_t)n, k + 1) - pl_dist_shard_lo((size_t)n, k));
        if (plen > (uint64_t)(end - q) || plen < 4 || (int)get_u32(q) != want) { bad = 1; break; }
        q += 4;
        for (int i = 0; i < want && !bad; i++, at++) {
            if (pe - q < 4) { bad = 1; break; }
            uint32_t l = get_u32(q);
            q += 4;
            if ((size_t)(pe - q) < l) { bad = 1; break; }
            all[at] = q;
            all_len[at] = l;
            q += l;
        }
        bad = bad || q != pe;
    }
    if (bad) luaL_error(L, "m:generate (split over %d ranks): the ranks' answers do not add up to %d texts", g_split_size, n);
}

static int l_model_generate(lua_State *L) {
    lmodel *lm = need_model(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    int ot = 0;
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        ot = 3;
    }
    lua_settop(L, 3);
    lua_getfield(L, LUA_REGISTRYINDEX, SEED_KEY);
    lua_Integer def_seed = lua_tointeger(L, -1);
    lua_pop(L, 1);
    int max_tokens = (int)opt_int(L, ot, "max_tokens", 128, 0, 1 << 20);
    pl_sampler sp = {0};
    sp.temperature = (float)opt_num(L, ot, "temperature", 0.7, 0, 100);
    sp.top_p = (float)opt_num(L, ot, "top_p", 0.9, 1e-6, 1);
    sp.top_k = (int)opt_int(L, ot, "top_k", 0, 0, 1 << 24);
    sp.seed = (uint64_t)opt_int(L, ot, "seed", def_seed, LUA_MININTEGER, LUA_MAXINTEGER);
    int batch = (int)opt_int(L, ot, "batch", 8, 1, 4096);
    /* prompt i samples from RNG stream stream0 + i: a caller that generates
     * part of a list (one rank's part, docs/distributed.md) keeps each
     * prompt's draws */
    uint64_t stream0 = (uint64_t)opt_int(L, ot, "stream0", 0, 0, LUA_MAXINTEGER);

    job *j = job_push(L);
    /* stop strings */
    int n_stop_s = 0;
    const char **stop_s = NULL;
    size_t *stop_len = NULL;
    if (ot) {
        lua_getfield(L, ot, "stop");
        if (lua_type(L, -1) == LUA_TSTRING) {
            stop_s = job_calloc(L, j, 1, sizeof *stop_s);
            stop_len = job_calloc(L, j, 1, sizeof *stop_len);
            stop_s[0] = lua_tolstring(L, -1, &stop_len[0]);
            n_stop_s = 1; /* the string stays on the stack, anchored */
        } else if (lua_istable(L, -1)) {
            int st = lua_gettop(L);
            int ns = list_len(L, st, "m:generate: opts.stop");
            stop_s = job_calloc(L, j, (size_t)ns, sizeof *stop_s);
            stop_len = job_calloc(L, j, (size_t)ns, sizeof *stop_len);
            for (int k = 1; k <= ns; k++) {
                lua_rawgeti(L, st, k);
                if (lua_type(L, -1) != LUA_TSTRING)
                    luaL_error(L, "m:generate: opts.stop[%d]: expected a string, got %s", k, luaL_typename(L, -1));
                stop_s[n_stop_s] = lua_tolstring(L, -1, &stop_len[n_stop_s]);
                n_stop_s++;
                lua_pop(L, 1); /* anchored by the stop table, which stays on the stack */
            }
        } else if (!lua_isnil(L, -1)) {
            luaL_error(L, "m:generate: opts.stop: expected a list of strings, got %s", luaL_typename(L, -1));
        }
    }
    int n = list_len(L, 2, "m:generate: prompts");
    int32_t **ids = job_calloc(L, j, (size_t)n, sizeof *ids);
    int *n_ids = job_calloc(L, j, (size_t)n, sizeof *n_ids);
    seqbuf *bufs = calloc((size_t)(n ? n : 1), sizeof *bufs);
    if (!bufs) luaL_error(L, "out of memory");
    j->bufs = bufs;
    j->n_bufs = n;
    for (int i = 0; i < n; i++) encode_prompt(L, j, lm, 2, i + 1, &ids[i], &n_ids[i]);

    gen_cb_ctx cc = {.tok = lm->tok, .stop = stop_s, .stop_len = stop_len, .n_stop = n_stop_s};
    cc.piece_cap = (size_t)pl_tokenizer_max_piece_bytes(lm->tok) + 16;
    cc.piece = job_calloc(L, j, cc.piece_cap, 1);
    int32_t **out = job_calloc(L, j, (size_t)(batch < n ? batch : (n ? n : 1)), sizeof *out);
    int *n_out = job_calloc(L, j, (size_t)(batch < n ? batch : (n ? n : 1)), sizeof *n_out);
    pl_err err = {0};
    int rc = 0;
    /* split over ranks: this rank's prompts [lo, hi), batched from lo */
    int lo = 0, hi = n;
    if (g_split_size > 1) {
        lo = (int)pl_dist_shard_lo((size_t)n, g_split_rank);
        hi = (int)pl_dist_shard_lo((size_t)n, g_split_rank + 1);
    }
    for (int s0 = lo; s0 < hi && !rc; s0 += batch) {
        int nb = hi - s0 < batch ? hi - s0 : batch, maxp = 0;
        for (int i = 0; i < nb; i++) {
            bufs[s0 + i].prev = ids[s0 + i][n_ids[s0 + i] - 1];
            bufs[s0 + i].cut = -1;
            if (n_ids[s0 + i] > maxp) maxp = n_ids[s0 + i];
        }
        cc.bufs = bufs + s0;
        pl_gen_opts o = {.sampler = sp, .max_tokens = max_tokens, .stop = lm->stops, .n_stop = lm->n_stop,
                         .n_ctx = 0, .cb = on_token, .cb_ctx = &cc, .stream0 = stream0 + (uint64_t)s0};
        if ((int64_t)maxp + max_tokens > lm->m->cfg.max_seq) o.n_ctx = lm->m->cfg.max_seq;
        rc = pl_generate(lm->m, nb, (const int32_t *const *)(ids + s0), n_ids + s0, &o, out, n_out, NULL, &err);
        for (int i = 0; i < nb; i++) { free(out[i]); out[i] = NULL; }
        if (cc.oom && !rc) rc = pl_err_set(&err, PL_ENOMEM, "out of memory");
    }
    if (rc) luaL_error(L, "m:generate (%s): %s", lm->name, err.msg);
    /* the texts: this process's, or (split) every rank's from the parent's answer */
    const char **all = job_calloc(L, j, (size_t)(n ? n : 1), sizeof *all);
    size_t *all_len = job_calloc(L, j, (size_t)(n ? n : 1), sizeof *all_len);
    if (g_split_size > 1) {
        uint8_t hash[32];
        call_hash(n, ids, n_ids, max_tokens, &sp, batch, stream0, n_stop_s, stop_s, stop_len, hash);
        split_exchange(L, j, n, lo, hi, bufs, hash, all, all_len);
    } else {
        for (int i = 0; i < n; i++) {
            all[i] = bufs[i].s ? bufs[i].s : "";
            all_len[i] = seq_text_len(&bufs[i]);
        }
    }
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        push_utf8(L, j, all[i], all_len[i]);
        lua_rawseti(L, -2, i + 1);
    }
    job_release(j);
    return 1;
}

/* ---------------------------------------------------------- perplexity */

#define PPL_CHUNK 64

/* exp(mean NLL of tokens 1..T-1 given the ones before); inf when T < 2. */
static int text_ppl(lmodel *lm, job *j, const int32_t *ids, int T, float *logits, double *out, pl_err *err) {
    if (T < 2) { *out = HUGE_VAL; return 0; }
    const int V = lm->m->cfg.vocab;
    int rc = pl_kvcache_init(&j->kv, lm->m, 1, T, err);
    if (rc) return rc;
    j->has_kv = 1;
    double nll = 0;
    int seq = 0;
    for (int s0 = 0; s0 < T - 1 && !rc; s0 += PPL_CHUNK) {
        int nt = T - 1 - s0 < PPL_CHUNK ? T - 1 - s0 : PPL_CHUNK; /* the last token predicts nothing */
        const int32_t *tp = ids + s0;
        /* logits (nt, V) */
        rc = pl_model_decode(lm->m, &j->kv, 1, &seq, &tp, &nt, NULL, logits, err);
        for (int t = 0; t < nt && !rc; t++) {
            const float *row = logits + (size_t)t * V;
            float mx = row[0];
            for (int v = 1; v < V; v++) mx = row[v] > mx ? row[v] : mx;
            double se = 0;
            for (int v = 0; v < V; v++) se += exp((double)row[v] - mx);
            int target = ids[s0 + t + 1];
            nll += (log(se) + mx) - row[target];
        }
    }
    pl_kvcache_free(&j->kv);
    j->has_kv = 0;
    if (!rc) *out = exp(nll / (T - 1));
    return rc;
}

static int l_model_perplexity(lua_State *L) {
    lmodel *lm = need_model(L, 1);
    int single = lua_type(L, 2) == LUA_TSTRING;
    if (!single) luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    job *j = job_push(L);
    int n = single ? 1 : list_len(L, 2, "m:perplexity: texts");
    double *res = job_calloc(L, j, (size_t)(n > 0 ? n : 1), sizeof *res);
    const int V = lm->m->cfg.vocab, max_T = lm->m->cfg.max_seq;
    float *logits = job_calloc(L, j, (size_t)PPL_CHUNK * V, sizeof(float));
    for (int i = 0; i < n; i++) {
        if (!single) lua_rawgeti(L, 2, i + 1);
        else lua_pushvalue(L, 2);
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "m:perplexity: texts[%d]: expected a string, got %s", i + 1, luaL_typename(L, -1));
        size_t len;
        const char *s = lua_tolstring(L, -1, &len);
        pl_err err = {0};
        int32_t *ids = NULL;
        int T = 0;
        if (pl_tokenizer_encode(lm->tok, s, len, pl_tokenizer_add_bos(lm->tok), 0, &ids, &T, &err))
            luaL_error(L, "m:perplexity: texts[%d]: %s", i + 1, err.msg);
        job_own(L, j, ids);
        lua_pop(L, 1);
        if (T > max_T) T = max_T; /* longer texts are scored on their first max_seq tokens */
        if (text_ppl(lm, j, ids, T, logits, &res[i], &err))
            luaL_error(L, "m:perplexity (%s): texts[%d]: %s", lm->name, i + 1, err.msg);
    }
    if (single) {
        lua_pushnumber(L, res[0]);
    } else {
        lua_createtable(L, n, 0);
        for (int i = 0; i < n; i++) {
            lua_pushnumber(L, res[i]);
            lua_rawseti(L, -2, i + 1);
        }
    }
    job_release(j);
    return 1;
}

/* ---------------------------------------------------------- tokenizer */

/* Token ids of text as plain text: no BOS, special-token strings not parsed. */
static int32_t *encode_plain(lua_State *L, job *j, lmodel *lm, int idx, const char *what, int *n) {
    size_t len;
    const char *s = luaL_checklstring(L, idx, &len);
    pl_err err = {0};
    int32_t *ids = NULL;
    if (pl_tokenizer_encode(lm->tok, s, len, 0, 0, &ids, n, &err)) luaL_error(L, "%s: %s", what, err.msg);
    return job_own(L, j, ids);
}

static int l_model_count(lua_State *L) {
    lmodel *lm = need_model(L, 1);
    luaL_checkstring(L, 2);
    lua_settop(L, 2);
    job *j = job_push(L);
    int n = 0;
    encode_plain(L, j, lm, 2, "m:count_tokens", &n);
    job_release(j);
    lua_pushinteger(L, n);
    return 1;
}

static int l_model_encode(lua_State *L) {
    lmodel *lm = need_model(L, 1);
    luaL_checkstring(L, 2);
    lua_settop(L, 2);
    job *j = job_push(L);
    int n = 0;
    int32_t *ids = encode_plain(L, j, lm, 2, "m:encode", &n);
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lua_pushinteger(L, ids[i]);
        lua_rawseti(L, -2, i + 1);
    }
    job_release(j);
    return 1;
}

static int l_model_decode(lua_State *L) {
    lmodel *lm = need_model(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    job *j = job_push(L);
    int n = list_len(L, 2, "m:decode: ids"), V = pl_tokenizer_vocab(lm->tok);
    size_t cap = (size_t)pl_tokenizer_max_piece_bytes(lm->tok) + 16, len = 0;
    char *out = job_calloc(L, j, (size_t)(n > 0 ? n : 1), cap);
    int32_t prev = -1;
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, 2, i);
        int ok;
        lua_Integer id = lua_tointegerx(L, -1, &ok);
        if (!ok || id < 0 || id >= V)
            luaL_error(L, "m:decode: ids[%d]: expected a token id 0..%d, got %s", i, V - 1, luaL_tolstring(L, -1, NULL));
        lua_pop(L, 1);
        int k = pl_tokenizer_decode(lm->tok, prev, (int)id, 0, out + len, cap);
        if (k > 0) len += (size_t)k;
        prev = (int32_t)id;
    }
    push_utf8(L, j, out, len);
    job_release(j);
    return 1;
}

static int l_model_name(lua_State *L) {
    lmodel *lm = check_model(L, 1);
    lua_pushstring(L, lm->name ? lm->name : "(freed)");
    return 1;
}

static int l_model_tostring(lua_State *L) {
    lmodel *lm = check_model(L, 1);
    lua_pushfstring(L, "model(%s)", lm->name ? lm->name : "(freed)");
    return 1;
}

static const luaL_Reg model_methods[] = {
    {"generate", l_model_generate},
    {"perplexity", l_model_perplexity},
    {"count_tokens", l_model_count},
    {"count", l_model_count},
    {"encode", l_model_encode},
    {"decode", l_model_decode},
    {"name", l_model_name},
    {NULL, NULL},
};

int pl_lua_model_push(lua_State *L, const char *path, const char *display_name, pl_err *err) {
    if (!path || !*path) return pl_err_set(err, PL_EINVAL, "model: empty path");
    /* the userdata and its __gc exist before anything is malloc'd */
    lmodel *lm = lua_newuserdatauv(L, sizeof *lm, 0);
    memset(lm, 0, sizeof *lm);
    if (luaL_newmetatable(L, MODEL_MT)) {
        lua_pushcfunction(L, model_gc);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, l_model_tostring);
        lua_setfield(L, -2, "__tostring");
        lua_pushliteral(L, "locked");
        lua_setfield(L, -2, "__metatable");
        luaL_newlib(L, model_methods);
        lua_setfield(L, -2, "__index");
    }
    lua_setmetatable(L, -2);
    lm->path = strdup(path);
    lm->name = strdup(display_name ? display_name : path);
    if (!lm->path || !lm->name) {
        lua_pop(L, 1);
        return pl_err_set(err, PL_ENOMEM, "model %s: out of memory", path);
    }
    return 0;
}

int pl_lua_model_push_adapter(lua_State *L, const char *path, const char *adapter, const char *display_name, pl_err *err) {
    int rc = pl_lua_model_push(L, path, display_name, err);
    if (rc || !adapter) return rc;
    lmodel *lm = lua_touserdata(L, -1);
    if (!(lm->adapter = strdup(adapter))) {
        lua_pop(L, 1);
        return pl_err_set(err, PL_ENOMEM, "model %s: out of memory", path);
    }
    return 0;
}
