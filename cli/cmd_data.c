/* cmd_data.c: `potluck data`: build, verify, inspect, split, merge and export
 * sharded HDF5 datasets, and benchmark the loader. */
#include "cmd_data.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../core/mapfile.h"
#include "../core/sha256.h"
#include "../datasets/chat.h"
#include "../datasets/import.h"
#include "../datasets/loader.h"
#include "../datasets/manifest.h"
#include "../datasets/shard_writer.h"
#include "cli.h"

static const char *data_help =
    "usage: potluck data <subcommand> [options]   (format: docs/datasets.md)\n"
    "\n"
    "  build   --in FILE.jsonl --out DIR [--model PATH] [--template NAME|FILE]\n"
    "          [--format auto|openai|sharegpt|alpaca|text|io] [--mask assistant|all|last-assistant]\n"
    "          [--strict]\n"
    "          [--shard-tokens N] [--shard-bytes N] [--deflate 0-9] [--text] [--no-eos]\n"
    "          lines: {\"input_ids\": [...], \"loss_mask\": [...]} (pre-tokenized; mask optional),\n"
    "          {\"text\": \"...\"} (needs --model; every token trained, EOS appended),\n"
    "          conversations (OpenAI messages, ShareGPT, Alpaca) rendered with the tokenizer's chat\n"
    "          template or --template (chatml, llama2, llama3, mistral, alpaca, vicuna, guanaco, or\n"
    "          a Jinja file), trained on the assistant turns + end-of-turn marker by default;\n"
    "          {\"input\", \"output\"} trains the output + EOS. Bad records are reported as\n"
    "          FILE:LINE: reason and skipped (--strict: the first one is fatal). A record's\n"
    "          \"_prov\" object is stored as that sample's provenance (/provenance).\n"
    "          A killed build leaves the previous or no manifest; running it again resumes.\n"
    "  verify  DIR [--trust]        sha256 of every shard, schema, dtypes, offsets, masks, token range\n"
    "  inspect DIR [--model PATH] [--samples K]   counts, length histogram, trained fraction,\n"
    "          K decoded samples with trained spans in [[ ]] (decoded with the model the build\n"
    "          recorded when it is still there, else with --model; raw ids without either)\n"
    "  split   DIR --eval-permille P [--train-out DIR] [--eval-out DIR]\n"
    "          deterministic by sample_id: eval when sample_id % 1000 < P\n"
    "  merge   --out DIR [--dedup] DIR...\n"
    "  export  DIR --jsonl FILE|- [--model PATH]\n"
    "          with a tokenizer: {\"sample_id\", \"spans\": [{\"text\", \"trained\"}]};\n"
    "          without: {\"sample_id\", \"input_ids\", \"loss_mask\"} (data build reads it back);\n"
    "          text and \"_prov\" (provenance) when the dataset stores them\n"
    "  bench   DIR [--seq-len N] [--batch B] [--seconds S] [--seed S] [--preload]\n"
    "          packed tokens/s of the loader against a raw memory-mapped .bin of the same tokens\n"
    "          (--preload: the shards read into memory first)\n"
    "\n"
    "--model PATH is the model whose tokenizer (and chat template) is used: a GGUF file,\n"
    "a Hugging Face model folder, or a model name found in $POTLUCK_MODELS as recipes\n"
    "name them; --tokenizer PATH is accepted as another spelling.\n"
    "Every command checks each shard's size and sha256 against manifest.json before\n"
    "opening it with HDF5; --trust skips that (for shards you produced yourself).\n";

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* sha256 of the tokenizer: of tokenizer.json for a directory, else of the file. */
static int tokenizer_sha(const char *path, char hex[65], pl_err *err) {
    struct stat st;
    char buf[4096];
    if (stat(path, &st) != 0) return pl_err_set(err, PL_EIO, "%s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        snprintf(buf, sizeof buf, "%s/tokenizer.json", path);
        path = buf;
    }
    uint8_t d[32];
    int rc = pl_sha256_file(path, d, err);
    if (!rc) pl_sha256_hex(d, hex);
    return rc;
}

/* --model PATH names the model whose tokenizer is meant; --tokenizer is
 * the older spelling, still accepted. */
static int is_model_opt(const char *a) { return !strcmp(a, "--model") || !strcmp(a, "--tokenizer"); }

/* The tokenizer of model argument arg (a path or a model name, see
 * cli_model_path): loaded, its resolved path and sha256. */
static int load_model_tok(const char *arg, pl_tokenizer **tok, char **path, char sha[65], pl_err *err) {
    *tok = NULL;
    *path = NULL;
    int rc = cli_model_path(arg, path, err);
    if (!rc) rc = pl_tokenizer_load(tok, *path, err);
    if (!rc && sha) rc = tokenizer_sha(*path, sha, err);
    if (rc) { pl_tokenizer_free(*tok); *tok = NULL; free(*path); *path = NULL; }
    return rc;
}

/* Pull "--opt VALUE"; returns the value or NULL (and prints) when missing. */
static const char *optval(int argc, char **argv, int *i) {
    if (*i + 1 >= argc) {
        cli_fail("data: %s: expected a value", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

/* ------------------------------------------------------------------ build */

#define BAD_SHOWN 1000

/* A bad record skipped by the build: print the first BAD_SHOWN. */
static void report_bad(void *ctx, const char *msg) {
    long *n = ctx;
    if ((*n)++ < BAD_SHOWN) fprintf(stderr, "%s\n", msg);
}

static int data_build(int argc, char **argv) {
    pl_build_opts o = {0};
    o.deflate_level = -1;
    pl_build_chat bc = {0};
    long nbad = 0;
    bc.on_bad = report_bad;
    bc.ctx = &nbad;
    const char *tok_path = NULL, *tname = NULL;
    pl_err err = {0};
    long v;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *x;
        if (!strcmp(a, "--in")) { if (!(o.in_path = optval(argc, argv, &i))) return 1; }
        else if (!strcmp(a, "--out")) { if (!(o.out_dir = optval(argc, argv, &i))) return 1; }
        else if (is_model_opt(a)) { if (!(tok_path = optval(argc, argv, &i))) return 1; }
        else if (!strcmp(a, "--template")) { if (!(tname = optval(argc, argv, &i))) return 1; }
        else if (!strcmp(a, "--format")) {
            if (!(x = optval(argc, argv, &i))) return 1;
            if (pl_import_fmt_parse(x, &bc.fmt, &err)) return cli_fail_err(&err);
        } else if (!strcmp(a, "--mask")) {
            if (!(x = optval(argc, argv, &i))) return 1;
            if (pl_mask_mode_parse(x, &bc.mask, &err)) return cli_fail_err(&err);
        } else if (!strcmp(a, "--strict")) bc.strict = 1;
        else if (!strcmp(a, "--shard-tokens")) {
            if (!(x = optval(argc, argv, &i)) || cli_int(a, x, 1, 1L << 40, &v)) return 1;
            o.shard_tokens = v;
        } else if (!strcmp(a, "--shard-bytes")) {
            if (!(x = optval(argc, argv, &i)) || cli_int(a, x, 1, 1L << 42, &v)) return 1;
            o.shard_bytes = v;
        } else if (!strcmp(a, "--deflate")) {
            if (!(x = optval(argc, argv, &i)) || cli_int(a, x, 0, 9, &v)) return 1;
            o.deflate_level = (int)v;
        } else if (!strcmp(a, "--text")) o.store_text = 1;
        else if (!strcmp(a, "--no-eos")) o.no_eos = 1;
        else return cli_fail("data build: unknown option '%s' (see potluck data --help)", a);
    }
    if (!o.in_path || !o.out_dir) return cli_fail("data build: --in FILE.jsonl and --out DIR are required");
    /* --template: a built-in name, else a file holding a Jinja template */
    char *tfile = NULL;
    if (tname) {
        if (pl_chat_builtin(tname)) {
            bc.tmpl = tname;
            o.template_name = tname;
        } else {
            size_t len;
            if (pl_read_file(tname, 8u << 20, &tfile, &len, &err))
                return cli_fail("data build: --template %s: not a built-in (chatml, llama2, llama3, mistral, alpaca, "
                                "vicuna, guanaco) and not a readable file: %s", tname, err.msg);
            bc.tmpl = tfile;
            const char *sl = strrchr(tname, '/');
            o.template_name = sl ? sl + 1 : tname;
        }
    }
    pl_tokenizer *tok = NULL;
    char tsha[65] = "", *tpath = NULL;
    cJSON *prov = NULL;
    if (tok_path) {
        if (load_model_tok(tok_path, &tok, &tpath, tsha, &err)) {
            free(tfile);
            return cli_fail_err(&err);
        }
        /* where the tokenizer was, so data inspect can decode without --model */
        char *abs = realpath(tpath, NULL);
        prov = cJSON_CreateObject();
        cJSON *t = cJSON_AddObjectToObject(prov, "tokenizer");
        cJSON_AddStringToObject(t, "path", abs ? abs : tpath);
        cJSON_AddStringToObject(t, "sha256", tsha);
        free(abs);
        o.provenance_extra = prov;
    }
    o.tok = tok;
    o.tokenizer_sha256 = tsha;
    pl_build_stats st;
    double t0 = now_s();
    int rc = pl_dataset_build_chat(&o, &bc, &st, &err);
    double dt = now_s() - t0;
    pl_tokenizer_free(tok);
    free(tfile);
    free(tpath);
    cJSON_Delete(prov);
    if (nbad > BAD_SHOWN) fprintf(stderr, "(%ld more bad records not listed)\n", nbad - BAD_SHOWN);
    if (rc) return cli_fail_err(&err);
    if (st.already_complete)
        printf("build: %s is already complete for this input and options (%d shards, %lld samples)\n", o.out_dir,
               st.shards, (long long)st.samples);
    else
        printf("build: %s: %d shards (%d kept from an interrupted run), %lld samples, %lld tokens, %lld trained "
               "(%.1f%%), %lld records skipped (%lld bad in this run), %.2f s, %.0f tokens/s\n",
               o.out_dir, st.shards, st.shards_kept, (long long)st.samples, (long long)st.tokens,
               (long long)st.trained, st.tokens ? 100.0 * (double)st.trained / (double)st.tokens : 0.0,
               (long long)st.skipped, (long long)st.bad, dt, dt > 0 ? (double)st.tokens / dt : 0.0);
    return 0;
}

/* ----------------------------------------------------------------- verify */

/* provenance.sample_provenance of the manifest: shards hold /provenance. */
static int manifest_sample_prov(const pl_manifest *m) {
    return cJSON_IsTrue(m->provenance ? cJSON_GetObjectItemCaseSensitive(m->provenance, "sample_provenance") : NULL);
}

static int data_verify(int argc, char **argv) {
    const char *dir = NULL;
    int trust = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--trust")) trust = 1;
        else if (argv[i][0] == '-') return cli_fail("data verify: unknown option '%s'", argv[i]);
        else if (!dir) dir = argv[i];
        else return cli_fail("data verify: give one dataset directory");
    }
    if (!dir) return cli_fail("data verify: a dataset DIR is required");
    pl_err err = {0};
    pl_manifest *m;
    if (pl_manifest_load(&m, dir, &err)) return cli_fail_err(&err);
    int bad = 0;
    char first[sizeof err.msg] = "";
    for (int i = 0; i < m->n_shards; i++) {
        const pl_manifest_shard *ms = &m->shards[i];
        pl_shard *s;
        if (pl_manifest_open_shard(m, dir, i, trust, &s, &err)) {
            printf("FAIL %s: %s\n", ms->file, err.msg);
            if (!bad++) snprintf(first, sizeof first, "%s", err.msg);
            continue;
        }
        int64_t T = pl_shard_tokens(s);
        int32_t *tok = malloc(sizeof *tok * (size_t)(T ? T : 1));
        uint8_t *mask = malloc((size_t)(T ? T : 1));
        int rc = (!tok || !mask) ? pl_err_set(&err, PL_ENOMEM, "%s: out of memory", ms->file)
                                 : pl_shard_read_all(s, tok, mask, &err);
        if (!rc) {
            int64_t trained = 0;
            for (int64_t k = 0; k < T && !rc; k++) {
                if (mask[k] > 1)
                    rc = pl_err_set(&err, PL_EFORMAT, "%s/%s: loss_mask[%lld] = %d, expected 0 or 1", dir, ms->file,
                                    (long long)k, mask[k]);
                else if (tok[k] < 0 || (m->vocab && tok[k] >= m->vocab))
                    rc = pl_err_set(&err, PL_EFORMAT, "%s/%s: tokens[%lld] = %d is outside the vocabulary [0, %lld)", dir,
                                    ms->file, (long long)k, tok[k], (long long)(m->vocab ? m->vocab : INT32_MAX));
                trained += mask[k];
            }
            if (!rc && trained != ms->trained)
                rc = pl_err_set(&err, PL_EFORMAT, "%s/%s: %lld trained tokens, the manifest says %lld", dir, ms->file,
                                (long long)trained, (long long)ms->trained);
            if (!rc && m->has_text && !pl_shard_has_text(s))
                rc = pl_err_set(&err, PL_EFORMAT, "%s/%s: /text is missing but the manifest says text is stored", dir,
                                ms->file);
            if (!rc && manifest_sample_prov(m) && !pl_shard_has_provenance(s))
                rc = pl_err_set(&err, PL_EFORMAT,
                                "%s/%s: /provenance is missing but the manifest says sample provenance is stored", dir,
                                ms->file);
        }
        free(tok);
        free(mask);
        pl_shard_close(s);
        if (rc) {
            printf("FAIL %s: %s\n", ms->file, err.msg);
            if (!bad++) snprintf(first, sizeof first, "%s", err.msg);
        } else {
            printf("ok %s: %lld samples, %lld tokens, sha256 %s%s\n", ms->file, (long long)ms->samples,
                   (long long)ms->tokens, trust ? "not checked (--trust)" : "matches", "");
        }
    }
    if (bad) {
        int n = m->n_shards;
        pl_manifest_free(m);
        for (char *p = first; *p; p++)
            if (*p == '\n' || *p == '\r') *p = ' ';
        return cli_fail("data verify: %s: %d of %d shards failed; first: %s", dir, bad, n, first);
    }
    printf("verify: %s: ok (schema %lld, %d shards, %lld samples, %lld tokens, %lld trained)\n", dir,
           (long long)m->schema, m->n_shards, (long long)m->samples, (long long)m->tokens, (long long)m->trained);
    pl_manifest_free(m);
    return 0;
}

/* ----------------------------------------------------- decode with marks */

typedef struct sbuf {
    char *p;
    size_t n, cap;
} sbuf;

static int sb_add(sbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t c = b->cap ? b->cap * 2 : 256;
        while (c < b->n + n + 1) c *= 2;
        char *q = realloc(b->p, c);
        if (!q) return 0;
        b->p = q;
        b->cap = c;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return 1;
}

/* Text of tok[0..n) with trained runs wrapped in [[ ]]. */
static char *decode_marked(const pl_tokenizer *t, const int32_t *tok, const uint8_t *mask, int64_t n) {
    sbuf b = {0};
    char piece[1024];
    int cap = pl_tokenizer_max_piece_bytes(t);
    if (cap > (int)sizeof piece) cap = (int)sizeof piece;
    int in = 0;
    sb_add(&b, "", 0);
    for (int64_t i = 0; i < n; i++) {
        if (mask[i] && !in) sb_add(&b, "[[", 2), in = 1;
        if (!mask[i] && in) sb_add(&b, "]]", 2), in = 0;
        int k = pl_tokenizer_decode(t, i ? tok[i - 1] : -1, tok[i], 1, piece, (size_t)cap);
        if (k > 0) sb_add(&b, piece, (size_t)k);
    }
    if (in) sb_add(&b, "]]", 2);
    return b.p;
}

/* ---------------------------------------------------------------- inspect */

/* The tokenizer the build recorded (provenance.tokenizer: path, sha256),
 * when its file is still there and still the same; else *tok stays NULL and
 * why goes to why. */
static void recorded_tokenizer(const pl_manifest *m, pl_tokenizer **tok, char *why, size_t why_n) {
    const cJSON *t = m->provenance ? cJSON_GetObjectItemCaseSensitive(m->provenance, "tokenizer") : NULL;
    const char *path = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "path"));
    const char *sha = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(t, "sha256"));
    if (!path) return;
    pl_err e = {0};
    char now[65];
    if (sha && *sha && (tokenizer_sha(path, now, &e) || strcmp(now, sha))) {
        snprintf(why, why_n, "(the build's tokenizer %s is gone or changed; give --model PATH to decode)", path);
        return;
    }
    if (pl_tokenizer_load(tok, path, &e)) {
        *tok = NULL;
        snprintf(why, why_n, "(the build's tokenizer %s does not load: %s)", path, e.msg);
        return;
    }
    snprintf(why, why_n, "%s (recorded by the build)", path);
}

static int data_inspect(int argc, char **argv) {
    const char *dir = NULL, *tok_path = NULL;
    int trust = 0;
    long nshow = 3;
    for (int i = 1; i < argc; i++) {
        const char *x;
        if (!strcmp(argv[i], "--trust")) trust = 1;
        else if (is_model_opt(argv[i])) { if (!(tok_path = optval(argc, argv, &i))) return 1; }
        else if (!strcmp(argv[i], "--samples")) {
            if (!(x = optval(argc, argv, &i)) || cli_int("--samples", x, 0, 1000, &nshow)) return 1;
        } else if (argv[i][0] == '-') return cli_fail("data inspect: unknown option '%s'", argv[i]);
        else if (!dir) dir = argv[i];
        else return cli_fail("data inspect: give one dataset directory");
    }
    if (!dir) return cli_fail("data inspect: a dataset DIR is required");
    pl_err err = {0};
    pl_manifest *m;
    if (pl_manifest_load(&m, dir, &err)) return cli_fail_err(&err);
    pl_tokenizer *tok = NULL;
    char *tpath = NULL, decoded_with[4200] = "";
    if (tok_path) {
        char tsha[65];
        if (load_model_tok(tok_path, &tok, &tpath, tsha, &err)) {
            pl_manifest_free(m);
            return cli_fail_err(&err);
        }
        if (*m->tokenizer_sha256 && strcmp(tsha, m->tokenizer_sha256))
            fprintf(stderr, "potluck: warning: %s is not the tokenizer the dataset was built with (sha256 %.12s..., "
                            "manifest %.12s...)\n", tok_path, tsha, m->tokenizer_sha256);
        snprintf(decoded_with, sizeof decoded_with, "%s (--model)", tpath);
    } else {
        recorded_tokenizer(m, &tok, decoded_with, sizeof decoded_with);
    }
    free(tpath);
    printf("dataset:        %s (schema %lld)\n", dir, (long long)m->schema);
    printf("shards:         %d\n", m->n_shards);
    printf("samples:        %lld\n", (long long)m->samples);
    printf("tokens:         %lld (%.1f per sample)\n", (long long)m->tokens,
           m->samples ? (double)m->tokens / (double)m->samples : 0.0);
    printf("trained tokens: %lld (%.2f%% of tokens)\n", (long long)m->trained,
           m->tokens ? 100.0 * (double)m->trained / (double)m->tokens : 0.0);
    printf("tokenizer:      %s\n", *m->tokenizer_sha256 ? m->tokenizer_sha256 : "(unknown)");
    printf("decoded with:   %s\n", tok ? decoded_with : *decoded_with ? decoded_with
                                        : "(no tokenizer: samples as token ids; give --model PATH to decode)");
    printf("template:       %s\n", *m->template_name ? m->template_name : "(none)");
    printf("text stored:    %s\n", m->has_text ? "yes" : "no");
    printf("provenance:     %s\n", manifest_sample_prov(m) ? "stored per sample" : "none");
    int64_t hist[64] = {0}, minl = INT64_MAX, maxl = 0;
    int rc = 0, shown = 0;
    for (int i = 0; i < m->n_shards && !rc; i++) {
        pl_shard *s;
        if ((rc = pl_manifest_open_shard(m, dir, i, trust, &s, &err))) break;
        const int64_t *off = pl_shard_offsets(s);
        for (int64_t k = 0; k < pl_shard_samples(s); k++) {
            int64_t L = off[k + 1] - off[k];
            int b = 0;
            while (b < 62 && ((int64_t)1 << (b + 1)) <= L) b++;
            hist[L ? b + 1 : 0]++;
            if (L < minl) minl = L;
            if (L > maxl) maxl = L;
        }
        for (int64_t k = 0; shown < nshow && k < pl_shard_samples(s) && !rc; k++, shown++) {
            int64_t L = off[k + 1] - off[k];
            int32_t *tk = malloc(sizeof *tk * (size_t)(L ? L : 1));
            uint8_t *mk = malloc((size_t)(L ? L : 1));
            if (!tk || !mk) rc = pl_err_set(&err, PL_ENOMEM, "out of memory");
            if (!rc) rc = pl_shard_read(s, off[k], L, tk, mk, &err);
            if (!rc) {
                printf("\n--- sample %d (%s #%lld, sample_id %016" PRIx64 ", %lld tokens)\n", shown, m->shards[i].file,
                       (long long)k, pl_shard_ids(s)[k], (long long)L);
                if (tok) {
                    char *txt = decode_marked(tok, tk, mk, L);
                    printf("%s\n", txt ? txt : "");
                    free(txt);
                } else {
                    for (int64_t q = 0; q < L && q < 64; q++) printf("%s%d%s", mk[q] ? "[" : "", tk[q], mk[q] ? "] " : " ");
                    printf("%s\n", L > 64 ? "..." : "");
                }
                char *pv = NULL;
                if (pl_shard_has_provenance(s) && !(rc = pl_shard_read_provenance(s, k, &pv, &err)) && *pv)
                    printf("provenance: %s\n", pv);
                free(pv);
            }
            free(tk);
            free(mk);
        }
        pl_shard_close(s);
    }
    if (!rc) {
        printf("\nsample length histogram (tokens): min %lld, max %lld\n", (long long)(m->samples ? minl : 0),
               (long long)maxl);
        int64_t top = 1;
        for (int b = 0; b < 64; b++)
            if (hist[b] > top) top = hist[b];
        for (int b = 0; b < 64; b++) {
            if (!hist[b]) continue;
            char range[64];
            if (b == 0) snprintf(range, sizeof range, "0");
            else snprintf(range, sizeof range, "%lld-%lld", 1LL << (b - 1), (1LL << b) - 1);
            int bar = (int)(40 * hist[b] / top);
            printf("  %-14s %10lld  %.*s\n", range, (long long)hist[b], bar > 0 ? bar : 1,
                   "########################################");
        }
    }
    pl_tokenizer_free(tok);
    pl_manifest_free(m);
    return rc ? cli_fail_err(&err) : 0;
}

/* ------------------------------------------------------------ split/merge */

static int data_split(int argc, char **argv) {
    const char *dir = NULL, *tr = NULL, *ev = NULL;
    long permille = -1;
    int trust = 0;
    for (int i = 1; i < argc; i++) {
        const char *x;
        if (!strcmp(argv[i], "--trust")) trust = 1;
        else if (!strcmp(argv[i], "--train-out")) { if (!(tr = optval(argc, argv, &i))) return 1; }
        else if (!strcmp(argv[i], "--eval-out")) { if (!(ev = optval(argc, argv, &i))) return 1; }
        else if (!strcmp(argv[i], "--eval-permille")) {
            if (!(x = optval(argc, argv, &i)) || cli_int("--eval-permille", x, 0, 1000, &permille)) return 1;
        } else if (argv[i][0] == '-') return cli_fail("data split: unknown option '%s'", argv[i]);
        else if (!dir) dir = argv[i];
        else return cli_fail("data split: give one dataset directory");
    }
    if (!dir || permille < 0 || (!tr && !ev))
        return cli_fail("data split: DIR, --eval-permille P and --train-out and/or --eval-out are required");
    pl_err err = {0};
    int64_t nt = 0, ne = 0;
    if (pl_dataset_split(dir, (int)permille, tr, ev, trust, &nt, &ne, &err)) return cli_fail_err(&err);
    printf("split: %s: %lld train, %lld eval (sample_id %% 1000 < %ld)\n", dir, (long long)nt, (long long)ne, permille);
    return 0;
}

static int data_merge(int argc, char **argv) {
    const char *out = NULL;
    int dedup = 0, trust = 0, n = 0;
    const char **ins = calloc((size_t)argc, sizeof *ins);
    if (!ins) return cli_fail("out of memory");
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--out")) {
            if (!(out = optval(argc, argv, &i))) { free(ins); return 1; }
        } else if (!strcmp(argv[i], "--dedup")) dedup = 1;
        else if (!strcmp(argv[i], "--trust")) trust = 1;
        else if (argv[i][0] == '-') { free(ins); return cli_fail("data merge: unknown option '%s'", argv[i]); }
        else ins[n++] = argv[i];
    }
    if (!out || n < 1) {
        free(ins);
        return cli_fail("data merge: --out DIR and at least one input DIR are required");
    }
    pl_err err = {0};
    int64_t no = 0, nd = 0;
    int rc = pl_dataset_merge(ins, n, out, dedup, trust, &no, &nd, &err);
    free(ins);
    if (rc) return cli_fail_err(&err);
    printf("merge: %s: %lld samples from %d datasets, %lld duplicates dropped\n", out, (long long)no, n, (long long)nd);
    return 0;
}

/* ----------------------------------------------------------------- export */

static int data_export(int argc, char **argv) {
    const char *dir = NULL, *outp = NULL, *tok_path = NULL;
    int trust = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--trust")) trust = 1;
        else if (!strcmp(argv[i], "--jsonl")) { if (!(outp = optval(argc, argv, &i))) return 1; }
        else if (is_model_opt(argv[i])) { if (!(tok_path = optval(argc, argv, &i))) return 1; }
        else if (argv[i][0] == '-') return cli_fail("data export: unknown option '%s'", argv[i]);
        else if (!dir) dir = argv[i];
        else return cli_fail("data export: give one dataset directory");
    }
    if (!dir || !outp) return cli_fail("data export: DIR and --jsonl FILE (or -) are required");
    pl_err err = {0};
    pl_manifest *m;
    if (pl_manifest_load(&m, dir, &err)) return cli_fail_err(&err);
    pl_tokenizer *tok = NULL;
    char *tpath = NULL;
    if (tok_path && load_model_tok(tok_path, &tok, &tpath, NULL, &err)) {
        pl_manifest_free(m);
        return cli_fail_err(&err);
    }
    free(tpath);
    FILE *fp = strcmp(outp, "-") ? fopen(outp, "w") : stdout;
    if (!fp) {
        pl_tokenizer_free(tok);
        pl_manifest_free(m);
        return cli_fail("data export: %s: %s", outp, strerror(errno));
    }
    int rc = 0;
    int64_t count = 0;
    char piece[1024];
    for (int i = 0; i < m->n_shards && !rc; i++) {
        pl_shard *s;
        if ((rc = pl_manifest_open_shard(m, dir, i, trust, &s, &err))) break;
        int64_t T = pl_shard_tokens(s);
        int32_t *tk = malloc(sizeof *tk * (size_t)(T ? T : 1));
        uint8_t *mk = malloc((size_t)(T ? T : 1));
        if (!tk || !mk) rc = pl_err_set(&err, PL_ENOMEM, "out of memory");
        if (!rc) rc = pl_shard_read_all(s, tk, mk, &err);
        const int64_t *off = pl_shard_offsets(s);
        for (int64_t k = 0; !rc && k < pl_shard_samples(s); k++) {
            cJSON *o = cJSON_CreateObject();
            char hex[17];
            snprintf(hex, sizeof hex, "%016" PRIx64, pl_shard_ids(s)[k]);
            cJSON_AddStringToObject(o, "sample_id", hex);
            char *text = NULL;
            if (pl_shard_has_text(s) && !(rc = pl_shard_read_text(s, k, &text, &err))) cJSON_AddStringToObject(o, "text", text);
            free(text);
            /* provenance as the "_prov" object `data build` reads back */
            char *pv = NULL;
            if (!rc && pl_shard_has_provenance(s) && !(rc = pl_shard_read_provenance(s, k, &pv, &err)) && *pv) {
                cJSON *pj = cJSON_Parse(pv);
                if (pj) cJSON_AddItemToObject(o, "_prov", pj);
                else cJSON_AddStringToObject(o, "_prov", pv);
            }
            free(pv);
            if (tok) {
                cJSON *spans = cJSON_AddArrayToObject(o, "spans");
                sbuf b = {0};
                sb_add(&b, "", 0);
                int cur = -1;
                for (int64_t q = off[k]; q <= off[k + 1]; q++) {
                    if (q == off[k + 1] || (cur >= 0 && mk[q] != cur)) {
                        cJSON *sp = cJSON_CreateObject();
                        cJSON_AddStringToObject(sp, "text", b.p ? b.p : "");
                        cJSON_AddBoolToObject(sp, "trained", cur == 1);
                        cJSON_AddItemToArray(spans, sp);
                        b.n = 0;
                        if (b.p) b.p[0] = 0;
                        if (q == off[k + 1]) break;
                    }
                    cur = mk[q];
                    int nb = pl_tokenizer_decode(tok, q > off[k] ? tk[q - 1] : -1, tk[q], 1, piece, sizeof piece);
                    if (nb > 0) sb_add(&b, piece, (size_t)nb);
                }
                free(b.p);
            } else {
                cJSON *ids = cJSON_AddArrayToObject(o, "input_ids"), *ms = cJSON_AddArrayToObject(o, "loss_mask");
                for (int64_t q = off[k]; q < off[k + 1]; q++) {
                    cJSON_AddItemToArray(ids, cJSON_CreateNumber(tk[q]));
                    cJSON_AddItemToArray(ms, cJSON_CreateNumber(mk[q]));
                }
            }
            char *line = cJSON_PrintUnformatted(o);
            cJSON_Delete(o);
            if (!line) {
                rc = pl_err_set(&err, PL_ENOMEM, "out of memory");
                break;
            }
            fprintf(fp, "%s\n", line);
            cJSON_free(line);
            count++;
        }
        free(tk);
        free(mk);
        pl_shard_close(s);
    }
    if (fp != stdout && fclose(fp) != 0 && !rc) rc = pl_err_set(&err, PL_EIO, "%s: write error", outp);
    pl_tokenizer_free(tok);
    pl_manifest_free(m);
    if (rc) return cli_fail_err(&err);
    fprintf(stderr, "export: %lld samples to %s\n", (long long)count, outp);
    return 0;
}

/* ------------------------------------------------------------------ bench */

static int data_bench(int argc, char **argv) {
    const char *dir = NULL;
    long seq = 512, batch = 8, seconds = 3, seed = 1, preload = 0;
    for (int i = 1; i < argc; i++) {
        const char *x, *a = argv[i];
        long *dst = !strcmp(a, "--seq-len") ? &seq : !strcmp(a, "--batch") ? &batch : !strcmp(a, "--seconds") ? &seconds
                    : !strcmp(a, "--seed") ? &seed : NULL;
        if (!strcmp(a, "--preload")) preload = 1;
        else if (dst) {
            if (!(x = optval(argc, argv, &i)) || cli_int(a, x, 1, 1L << 30, dst)) return 1;
        } else if (a[0] == '-') return cli_fail("data bench: unknown option '%s'", a);
        else if (!dir) dir = a;
        else return cli_fail("data bench: give one dataset directory");
    }
    if (!dir) return cli_fail("data bench: a dataset DIR is required");
    pl_err err = {0};
    pl_loader_opts o = {(int)seq, (int)batch, (uint64_t)seed, PL_LONG_TRUNCATE, 0, 4, 0, 0,
                        preload ? 0 : -1, 0};
    double t0 = now_s();
    pl_loader *l;
    if (pl_loader_open(&l, dir, &o, NULL, &err)) return cli_fail_err(&err);
    double t_open = now_s() - t0;
    pl_batch b;
    if (pl_batch_alloc(l, &b, &err)) {
        pl_loader_close(l);
        return cli_fail_err(&err);
    }
    int64_t real = 0, rows = 0;
    uint64_t sink = 0;
    t0 = now_s();
    double t;
    while ((t = now_s() - t0) < (double)seconds) {
        if (pl_loader_next(l, &b, &err)) break;
        real += b.n_real;
        rows += b.rows;
        sink += (uint64_t)b.ids[0];
    }
    double ld = now_s() - t0;
    double pad = pl_loader_padding(l);
    int64_t n = pl_loader_samples(l);
    /* raw: every token into a Megatron-style .bin (int32), offsets in memory,
     * mmap'd and read in a shuffled sample order, truncated to seq_len */
    char binp[] = "/tmp/potluck-bench-XXXXXX";
    int fd = mkstemp(binp);
    int64_t *off = malloc(sizeof *off * (size_t)(n + 1));
    int64_t *perm = malloc(sizeof *perm * (size_t)n);
    int rc = fd < 0 || !off || !perm;
    if (off) off[0] = 0;
    int32_t *tk = NULL;
    uint8_t *mk = NULL;
    int64_t maxl = 0;
    for (int64_t g = 0; !rc && g < n; g++) {
        int64_t L = pl_loader_sample_len(l, g);
        off[g + 1] = off[g] + L;
        if (L > maxl) maxl = L;
    }
    if (!rc) {
        tk = malloc(sizeof *tk * (size_t)(maxl + 1));
        mk = malloc((size_t)(maxl + 1));
        rc = !tk || !mk;
    }
    FILE *bf = rc ? NULL : fdopen(fd, "wb");
    for (int64_t g = 0; bf && g < n; g++) {
        int64_t L = off[g + 1] - off[g];
        if (pl_loader_sample(l, g, tk, mk, &err)) { rc = 1; break; }
        fwrite(tk, sizeof *tk, (size_t)L, bf);
    }
    if (bf) { fflush(bf); }
    double raw_tps = 0;
    int64_t raw_tokens = 0;
    if (!rc) {
        size_t bytes = (size_t)off[n] * sizeof(int32_t);
        const int32_t *map = mmap(NULL, bytes ? bytes : 1, PROT_READ, MAP_SHARED, fd, 0);
        int32_t *row = malloc(sizeof *row * (size_t)seq);
        if (map != MAP_FAILED && row) {
            for (int64_t i = 0; i < n; i++) perm[i] = i;
            uint64_t x = (uint64_t)seed * 0x9E3779B97F4A7C15ull + 1;
            for (int64_t i = n - 1; i > 0; i--) {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                int64_t j = (int64_t)(x % (uint64_t)(i + 1)), tmp = perm[i];
                perm[i] = perm[j]; perm[j] = tmp;
            }
            t0 = now_s();
            int64_t k = 0;
            while (now_s() - t0 < (double)seconds) {
                for (int r = 0; r < 4096; r++, k++) {
                    int64_t g = perm[k % n], L = off[g + 1] - off[g];
                    if (L > seq) L = seq;
                    memcpy(row, map + off[g], sizeof *row * (size_t)L);
                    sink += (uint64_t)row[0];
                    raw_tokens += L;
                }
            }
            raw_tps = (double)raw_tokens / (now_s() - t0);
            munmap((void *)map, bytes ? bytes : 1);
        }
        free(row);
    }
    if (bf) fclose(bf);
    else if (fd >= 0) close(fd);
    if (fd >= 0) unlink(binp);
    double tps = (double)real / ld;
    printf("loader: %.0f packed tokens/s (%lld rows of %ld in %.2f s, padding %.2f%%, shuffle on, deflate on, %s, "
           "prefetch thread; open + check took %.2f s)\n", tps, (long long)rows, seq, ld, 100 * pad,
           preload ? "shards preloaded" : "per-sample HDF5 reads", t_open);
    printf("raw mmap .bin: %.0f tokens/s (same tokens, shuffled sample order, no packing)\n", raw_tps);
    printf("ratio loader/raw: %.3f   (checksum %llu)\n", raw_tps > 0 ? tps / raw_tps : 0.0, (unsigned long long)(sink & 1));
    free(tk);
    free(mk);
    free(off);
    free(perm);
    pl_batch_free(&b);
    pl_loader_close(l);
    return rc ? cli_fail("data bench: raw comparison failed") : 0;
}

int cmd_data(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        fputs(data_help, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(data_help, stdout);
            return 0;
        }
    const char *sub = argv[1];
    if (!strcmp(sub, "build")) return data_build(argc - 1, argv + 1);
    if (!strcmp(sub, "verify")) return data_verify(argc - 1, argv + 1);
    if (!strcmp(sub, "inspect")) return data_inspect(argc - 1, argv + 1);
    if (!strcmp(sub, "split")) return data_split(argc - 1, argv + 1);
    if (!strcmp(sub, "merge")) return data_merge(argc - 1, argv + 1);
    if (!strcmp(sub, "export")) return data_export(argc - 1, argv + 1);
    if (!strcmp(sub, "bench")) return data_bench(argc - 1, argv + 1);
    return cli_fail("data: unknown subcommand '%s' (build, verify, inspect, split, merge, export, bench)", sub);
}
