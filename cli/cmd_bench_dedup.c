/* cmd_bench_dedup.c: `potluck bench-dedup FILE.jsonl`: streaming MinHash + LSH near-dedup of the
 * {"text": ...} lines of a file on one thread, one JSON line with documents/s and duplicates found
 * (bench/dedup.sh compares it with datasketch on the same corpus). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#include "../datasets/minhash.h"
#include "cli.h"
#include "cmd_bench_dedup.h"

static const char *bench_dedup_help =
    "usage: potluck bench-dedup FILE.jsonl [--num-perm N] [--threshold T] [--ngram N] [--unit word|char]\n"
    "                                      [--seed S]\n"
    "\n"
    "Reads the \"text\" field of every JSON line into memory, then runs the streaming\n"
    "near-dedup of `dedup.minhash` over them on one thread (shingles, MinHash signature,\n"
    "LSH query, estimated Jaccard of the candidates, insert when new) and prints one JSON\n"
    "line: documents, duplicates, seconds (the dedup loop only, not the file read),\n"
    "docs_per_s, and the parameters (bands x rows chosen from the threshold as datasketch\n"
    "does). Defaults: N=128, T=0.8, ngram 5, unit word, seed 1.\n";

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int cmd_bench_dedup(int argc, char **argv) {
    const char *path = NULL;
    pl_minhash_opts o;
    pl_minhash_opts_default(&o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long x;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(bench_dedup_help, stdout);
            return 0;
        }
        if (!strcmp(a, "--num-perm")) {
            if (cli_int(a, v, 1, 4096, &x)) return 1;
            o.num_perm = (int)x;
            i++;
        } else if (!strcmp(a, "--ngram")) {
            if (cli_int(a, v, 1, 1024, &x)) return 1;
            o.ngram = (int)x;
            i++;
        } else if (!strcmp(a, "--seed")) {
            if (cli_int(a, v, 0, 1L << 40, &x)) return 1;
            o.seed = (uint64_t)x;
            i++;
        } else if (!strcmp(a, "--threshold")) {
            char *end;
            if (!v) return cli_fail("bench-dedup: --threshold: expected a number");
            o.threshold = strtod(v, &end);
            if (*end || !(o.threshold > 0 && o.threshold <= 1))
                return cli_fail("bench-dedup: --threshold: expected a number in (0, 1], got '%s'", v);
            i++;
        } else if (!strcmp(a, "--unit")) {
            if (v && !strcmp(v, "word")) o.unit = PL_UNIT_WORD;
            else if (v && !strcmp(v, "char")) o.unit = PL_UNIT_CHAR;
            else return cli_fail("bench-dedup: --unit: expected word or char, got '%s'", v ? v : "");
            i++;
        } else if (a[0] == '-') {
            return cli_fail("bench-dedup: unknown option '%s' (see potluck bench-dedup --help)", a);
        } else if (!path) {
            path = a;
        } else {
            return cli_fail("bench-dedup: one input file only, got '%s' and '%s'", path, a);
        }
    }
    if (!path) return cli_fail("bench-dedup: FILE.jsonl is required (see potluck bench-dedup --help)");
    FILE *f = fopen(path, "r");
    if (!f) return cli_fail("bench-dedup: %s: cannot open", path);
    char **texts = NULL, *line = NULL;
    size_t n = 0, cap = 0, lcap = 0, lineno = 0;
    ssize_t got;
    int status = 1;
    while ((got = getline(&line, &lcap, f)) > 0) {
        lineno++;
        if (got == 1 && line[0] == '\n') continue;
        cJSON *j = cJSON_ParseWithLength(line, (size_t)got);
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "text");
        if (!cJSON_IsString(t)) {
            cJSON_Delete(j);
            cli_fail("bench-dedup: %s:%zu: expected a JSON object with a string \"text\"", path, lineno);
            goto out;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 4096;
            char **nt = realloc(texts, cap * sizeof *nt);
            if (!nt) {
                cJSON_Delete(j);
                cli_fail("bench-dedup: out of memory");
                goto out;
            }
            texts = nt;
        }
        texts[n] = strdup(t->valuestring);
        cJSON_Delete(j);
        if (!texts[n]) {
            cli_fail("bench-dedup: out of memory");
            goto out;
        }
        n++;
    }
    pl_err err = {0};
    pl_minhash *m;
    if (pl_minhash_new(&m, &o, &err)) {
        cli_fail_err(&err);
        goto out;
    }
    size_t dups = 0;
    double t0 = now_s();
    for (size_t i = 0; i < n; i++) {
        int64_t dup;
        if (pl_minhash_check_add(m, texts[i], strlen(texts[i]), &dup, NULL, &err)) {
            cli_fail_err(&err);
            pl_minhash_free(m);
            goto out;
        }
        dups += dup >= 0;
    }
    double dt = now_s() - t0;
    const pl_minhash_opts *r = pl_minhash_options(m);
    printf("{\"documents\": %zu, \"duplicates\": %zu, \"seconds\": %.4f, \"docs_per_s\": %.1f, \"num_perm\": %d, "
           "\"threshold\": %g, \"bands\": %d, \"rows\": %d, \"ngram\": %d, \"unit\": \"%s\"}\n",
           n, dups, dt, dt > 0 ? (double)n / dt : 0.0, r->num_perm, r->threshold, r->bands, r->rows, r->ngram,
           r->unit == PL_UNIT_WORD ? "word" : "char");
    pl_minhash_free(m);
    status = 0;
out:
    for (size_t i = 0; i < n; i++) free(texts[i]);
    free(texts);
    free(line);
    fclose(f);
    return status;
}
