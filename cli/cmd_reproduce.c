/* cmd_reproduce.c: `potluck reproduce BUNDLE [--base PATH] [--size NAME]
 * --out DIR`: rerun a bundle's recipe, on the same base model (compared with
 * the original byte for byte) or on another size (cmd_reproduce_size.c).
 *
 * Steps: verify and unpack the bundle into DIR/bundle; compare the base's
 * files with the sha256 the lock pins. The same base (and no --size): run the
 * unpacked recipe into DIR/run with the original's thread count, in a child
 * process (`potluck run`, so OpenMP's threads start fresh); then compare the
 * adapter files, results.json and the dataset shards' sha256 and print a
 * side-by-side table; exit status 0 only when everything is identical.
 * Another base given with --base, or --size: repro_other_size. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../core/atomic.h"
#include "../core/json.h"
#include "../core/mapfile.h"
#include "../core/sha256.h"
#include "../plugins/bundle.h"
#include "cli.h"
#include "cmd_bundle.h"
#include "cmd_reproduce.h"

static const char *repro_help =
    "usage: potluck reproduce BUNDLE.potluck --out DIR [--base PATH] [--size NAME] [--key PUB.pem]\n"
    "\n"
    "Verifies and unpacks the bundle into DIR/bundle, then compares the base model\n"
    "(--base, else the path the original run recorded) with the sha256s the lock pins.\n"
    "\n"
    "The same base: reruns the bundled recipe into DIR/run with the original's\n"
    "thread count and compares the adapter, results.json and the dataset shards\n"
    "with the original's, byte for byte, in a side-by-side table. Exit status 0\n"
    "when all are identical.\n"
    "\n"
    "Another base (a different size of the same family): checks that its tokenizer\n"
    "behaves as the original's (same ids for every token and probe text) and, when\n"
    "the recipe uses the model's own chat template, that the template is the same;\n"
    "plans the memory of the training at the new size with the recipe's scale rules\n"
    "and refuses when it does not fit this machine; runs; and writes the original's\n"
    "and the new run's settings, memory and results side by side (also to\n"
    "DIR/compare.md). Exit status 0 when the new run finished.\n"
    "\n"
    "  --base PATH    the model to run on (a GGUF, a Hugging Face folder, ...)\n"
    "  --size NAME    the recipe's scale entry to apply (13b, 33b, ...); default: the\n"
    "                 new base's parameter count rounded (6.7e9 -> 7b); the same base\n"
    "                 with --size runs the recipe at that size and compares too\n"
    "  --key PUB.pem  the signer's public key: the bundle must be signed by it\n"
    "                 (--trust is the same)\n";

int repro_file_hex(const char *p, char hex[65]) {
    uint8_t d[32];
    pl_err e = {0};
    if (pl_sha256_file(p, d, &e)) { hex[0] = 0; return -1; }
    pl_sha256_hex(d, hex);
    return 0;
}

const cJSON *repro_internal(const cJSON *lock) {
    return cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(lock, "predicate"), "buildDefinition"), "internalParameters");
}

const cJSON *repro_find_dep(const cJSON *lock, const char *name) {
    const cJSON *d;
    cJSON_ArrayForEach(d, cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(lock, "predicate"), "buildDefinition"),
                                              "resolvedDependencies"))
        if (!strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(d, "name")) ? cJSON_GetStringValue(cJSON_GetObjectItem(d, "name")) : "", name))
            return d;
    return NULL;
}

static int same_file(const char *a, const char *b) {
    char ha[65], hb[65];
    return !repro_file_hex(a, ha) && !repro_file_hex(b, hb) && !strcmp(ha, hb);
}

static void row(const char *what, const char *orig, const char *repro, const char *verdict) {
    printf("| %-36s | %-22s | %-22s | %-9s |\n", what, orig, repro, verdict);
}

static void num_s(const cJSON *o, const char *k, char *buf, size_t n) {
    const cJSON *v = cJSON_GetObjectItem(o, k);
    if (cJSON_IsNumber(v)) snprintf(buf, n, "%.10g", v->valuedouble);
    else snprintf(buf, n, "-");
}

/* Is the model at base the one the lock pins? 1 yes, 0 another model,
 * -1 when the lock pins none (message in why). A single file matches one
 * pinned weights file; a folder matches when every pinned weights file is
 * there, by name, with its sha256. */
static int same_base(const cJSON *lock, const char *base, char *hex, char *why, size_t n) {
    const cJSON *deps = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(lock, "predicate"), "buildDefinition"),
                                            "resolvedDependencies");
    const cJSON *d;
    int pinned = 0, same = 1;
    struct stat st;
    int dir = !stat(base, &st) && S_ISDIR(st.st_mode);
    hex[0] = 0;
    cJSON_ArrayForEach(d, deps) {
        const char *nm = cJSON_GetStringValue(cJSON_GetObjectItem(d, "name"));
        if (!nm || strcmp(nm, "base/weights")) continue;
        pinned++;
        const char *want = cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(d, "digest"), "sha256"));
        const char *uri = cJSON_GetStringValue(cJSON_GetObjectItem(d, "uri"));
        char p[PATH_MAX * 2], h[65];
        if (dir) {
            if (!uri || strchr(uri, '/')) { same = 0; continue; }
            snprintf(p, sizeof p, "%s/%s", base, uri);
        } else snprintf(p, sizeof p, "%s", base);
        if (repro_file_hex(p, h) || !want || strcmp(h, want)) same = 0;
        if (!hex[0]) snprintf(hex, 65, "%s", h);
    }
    if (!pinned) {
        snprintf(why, n, "the lock pins no base model weights (packed without the base): give a bundle packed with --base");
        return -1;
    }
    if (!dir && pinned != 1) same = 0;
    return same;
}

int repro_run_child(const repro_ctx *x, const char *size) {
    char p[PATH_MAX * 2], tbuf[16];
    snprintf(p, sizeof p, "%s/%s", x->ub, x->rname);
    snprintf(tbuf, sizeof tbuf, "%d", x->threads);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) return cli_fail("reproduce: fork: %s", strerror(errno));
    if (pid == 0) {
        char *av[14];
        int n = 0;
        av[n++] = "potluck";
        av[n++] = "run";
        av[n++] = p;
        av[n++] = "--base";
        av[n++] = (char *)x->base;
        av[n++] = "--out";
        av[n++] = (char *)x->rd;
        if (size) {
            av[n++] = "--size";
            av[n++] = (char *)size;
        }
        if (x->threads > 0) {
            av[n++] = "--threads";
            av[n++] = tbuf;
        }
        av[n] = NULL;
        execv("/proc/self/exe", av);
        _exit(127);
    }
    int ws = 0;
    while (waitpid(pid, &ws, 0) < 0 && errno == EINTR) {}
    if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0)
        return cli_fail("reproduce: the rerun failed (exit status %d); its output is above", WIFEXITED(ws) ? WEXITSTATUS(ws) : 128);
    return 0;
}

int cmd_reproduce(int argc, char **argv) {
    const char *bundle = NULL, *out = NULL, *base = NULL, *key = NULL, *size = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { fputs(repro_help, stdout); return 0; }
        int has = i + 1 < argc;
        if (!strcmp(a, "--out") && has) out = argv[++i];
        else if (!strcmp(a, "--base") && has) base = argv[++i];
        else if ((!strcmp(a, "--key") || !strcmp(a, "--trust")) && has) key = argv[++i];
        else if (!strcmp(a, "--size") && has) size = argv[++i];
        else if (a[0] == '-') return cli_fail("reproduce: unknown option or missing value: %s", a);
        else if (!bundle) bundle = a;
        else return cli_fail("reproduce: one bundle at a time");
    }
    if (!bundle || !out) {
        fputs(repro_help, stderr);
        return 2;
    }
    if (size && (!size[0] || strlen(size) > 32 || strspn(size, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != strlen(size)))
        return cli_fail("reproduce: --size: expected a size name such as 13b, got \"%.40s\"", size);
    pl_err err = {0};
    struct stat st;
    if (stat(out, &st) == 0) return cli_fail("reproduce: %s: already exists (reproduce makes a new folder)", out);
    if (base && stat(base, &st)) return cli_fail("reproduce: --base %s: %s", base, strerror(errno));
    if (pl_mkdirs(out, &err)) return cli_fail_err(&err);
    char ub[PATH_MAX], rd[PATH_MAX], p[PATH_MAX * 2], q[PATH_MAX * 2];
    snprintf(ub, sizeof ub, "%s/bundle", out);
    snprintf(rd, sizeof rd, "%s/run", out);
    pl_bundle_stats bs;
    if (pl_bundle_unpack(bundle, ub, key, &bs, &err)) return cli_fail("reproduce: %s: %s", bundle, err.msg);
    printf("reproduce: %s verified and unpacked into %s (%d files)\n", bundle, ub, bs.files);

    /* the lock, the original plan, the base */
    cJSON *lock = NULL, *plan = NULL;
    snprintf(p, sizeof p, "%s/potluck.lock.json", ub);
    if (pl_json_load(p, 64u << 20, &lock, &err)) return cli_fail_err(&err);
    snprintf(p, sizeof p, "%s/plan.json", ub);
    if (pl_json_load(p, 64u << 20, &plan, &err)) { cJSON_Delete(lock); return cli_fail_err(&err); }
    int rc = 1;
    int given = base != NULL;
    if (!base) base = cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(plan, "models"), "base"));
    char hex[65], why[256];
    const cJSON *meta = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(lock, "predicate"), "runDetails"), "metadata");
    const cJSON *host = cJSON_GetObjectItem(meta, "potluck_host");
    int threads = cJSON_IsNumber(cJSON_GetObjectItem(host, "threads")) ? (int)cJSON_GetNumberValue(cJSON_GetObjectItem(host, "threads")) : 0;
    const char *rname = cJSON_GetStringValue(cJSON_GetObjectItem(
        cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(lock, "predicate"), "buildDefinition"), "externalParameters"), "recipe"));
    if (!rname || strncmp(rname, "recipe/", 7)) { cli_fail("reproduce: the lock names no recipe file"); goto done; }
    if (!base) { cli_fail("reproduce: the original base path is not recorded: give --base PATH"); goto done; }
    if (stat(base, &st)) {
        cli_fail("reproduce: %s: the original's base is not here (%s): give --base PATH (the same model, or another size of its family)",
                 base, strerror(errno));
        goto done;
    }
    int base_same = same_base(lock, base, hex, why, sizeof why);
    repro_ctx x = {.out = out, .ub = ub, .rd = rd, .base = base, .size = size, .rname = rname, .threads = threads,
                   .lock = lock, .plan = plan};
    if (base_same < 0 && !given) { cli_fail("reproduce: %s", why); goto done; }
    if (base_same == 0 && !given) {
        cli_fail("reproduce: %s: sha256 %.16s... is not the bundle's base: a different model (to reproduce at another size, "
                 "give it with --base PATH)", base, hex);
        goto done;
    }
    if (base_same != 1 || size) {
        if (base_same != 1)
            printf("reproduce: %s is not the bundle's base (%s): reproducing at another size\n", base,
                   base_same < 0 ? "the lock pins none" : "its weights' sha256 differ");
        rc = repro_other_size(&x);
        goto done;
    }
    printf("reproduce: base %s matches the lock (sha256 %.16s...); rerunning %s with %d thread(s)\n", base, hex, rname, threads);
    if (repro_run_child(&x, NULL)) goto done;

    /* compare */
    int all = 1;
    printf("\n| %-36s | %-22s | %-22s | %-9s |\n", "what", "original", "reproduced", "same");
    printf("|%.38s|%.24s|%.24s|%.11s|\n", "--------------------------------------", "------------------------", "------------------------", "-----------");
    const char *ad[] = {"adapter_model.safetensors", "adapter_config.json"};
    for (int i = 0; i < 2; i++) {
        char h1[65], h2[65], w[128];
        snprintf(p, sizeof p, "%s/adapter/%s", ub, ad[i]);
        snprintf(q, sizeof q, "%s/export/adapter/%s", rd, ad[i]);
        if (stat(q, &st)) snprintf(q, sizeof q, "%s/train/adapter/%s", rd, ad[i]);
        repro_file_hex(p, h1);
        repro_file_hex(q, h2);
        int same = h1[0] && !strcmp(h1, h2);
        all &= same;
        snprintf(w, sizeof w, "adapter/%s", ad[i]);
        char a[32], b[32];
        snprintf(a, sizeof a, "sha256 %.12s", h1[0] ? h1 : "(missing)");
        snprintf(b, sizeof b, "sha256 %.12s", h2[0] ? h2 : "(missing)");
        row(w, a, b, same ? "identical" : "DIFFERS");
    }
    {
        snprintf(p, sizeof p, "%s/results.json", ub);
        snprintf(q, sizeof q, "%s/results.json", rd);
        int same = same_file(p, q);
        all &= same;
        row("results.json (bytes)", "", "", same ? "identical" : "DIFFERS");
        cJSON *r1 = NULL, *r2 = NULL;
        pl_err e = {0};
        pl_json_load(p, 16u << 20, &r1, &e);
        pl_json_load(q, 16u << 20, &r2, &e);
        const char *ks[] = {"steps", "tokens", "final_train_loss", "base_eval_loss", "eval_loss"};
        for (int i = 0; i < 5; i++) {
            char a[32], b[32];
            num_s(r1, ks[i], a, sizeof a);
            num_s(r2, ks[i], b, sizeof b);
            row(ks[i], a, b, strcmp(a, b) ? "DIFFERS" : "identical");
        }
        const cJSON *m;
        cJSON_ArrayForEach(m, cJSON_GetObjectItem(r1, "metrics")) {
            char a[32], b[32], w[64];
            num_s(cJSON_GetObjectItem(r1, "metrics"), m->string, a, sizeof a);
            num_s(cJSON_GetObjectItem(r2, "metrics"), m->string, b, sizeof b);
            snprintf(w, sizeof w, "metric %s", m->string);
            row(w, a, b, strcmp(a, b) ? "DIFFERS" : "identical");
        }
        cJSON_Delete(r1);
        cJSON_Delete(r2);
    }
    /* the plugins the rerun loaded (this potluck's) against the original's */
    {
        cJSON *p2 = NULL;
        pl_err e = {0};
        snprintf(q, sizeof q, "%s/plan.json", rd);
        pl_json_load(q, 64u << 20, &p2, &e);
        const cJSON *s1 = cJSON_GetObjectItem(plan, "steps"), *s2 = cJSON_GetObjectItem(p2, "steps");
        int n = cJSON_GetArraySize(s1), same = n == cJSON_GetArraySize(s2);
        for (int i = 0; i < n && same; i++) {
            const char *a = cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(s1, i), "plugin_sha256"));
            const char *b = cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(s2, i), "plugin_sha256"));
            same = (!a && !b) || (a && b && !strcmp(a, b));
        }
        all &= same;
        char a[32], b[32];
        snprintf(a, sizeof a, "%d steps", n);
        snprintf(b, sizeof b, "%d steps", cJSON_GetArraySize(s2));
        row("plugins (each step's sha256)", a, b, same ? "identical" : "DIFFERS");
        cJSON_Delete(p2);
    }
    /* the data: every shard the lock pins, against the rerun's manifest */
    const char *sides[] = {"train", "eval"};
    for (int s = 0; s < 2; s++) {
        snprintf(q, sizeof q, "%s/data/%s/manifest.json", rd, sides[s]);
        cJSON *m = NULL;
        pl_err e = {0};
        if (pl_json_load(q, 64u << 20, &m, &e)) continue;
        const cJSON *sh;
        cJSON_ArrayForEach(sh, cJSON_GetObjectItem(m, "shards")) {
            char w[PATH_MAX];
            const char *f = cJSON_GetStringValue(cJSON_GetObjectItem(sh, "file"));
            const char *h2 = cJSON_GetStringValue(cJSON_GetObjectItem(sh, "sha256"));
            snprintf(w, sizeof w, "data/%s/%s", sides[s], f ? f : "?");
            const cJSON *d = repro_find_dep(lock, w);
            const char *h1 = d ? cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(d, "digest"), "sha256")) : NULL;
            int same = h1 && h2 && !strcmp(h1, h2);
            all &= same;
            char a[32], b[32];
            snprintf(a, sizeof a, "sha256 %.12s", h1 ? h1 : "(none)");
            snprintf(b, sizeof b, "sha256 %.12s", h2 ? h2 : "(none)");
            row(w, a, b, same ? "identical" : "DIFFERS");
        }
        cJSON_Delete(m);
    }
    printf("\nreproduce: %s\n", all ? "identical: the adapter, results and data match the bundle byte for byte"
                                     : "DIFFERENT: see the table (same base, same recipe, same thread count)");
    rc = all ? 0 : 1;
done:
    cJSON_Delete(lock);
    cJSON_Delete(plan);
    return rc;
}
