/* export_base.c: how an exported adapter names its base model. PEFT's
 * adapter_config.json "base_model_name_or_path" is what a peer resolves
 * (AutoPeftModelForCausalLM looks it up as a Hugging Face repository id or a
 * local folder), so it gets a name a peer can resolve: the one the user gave,
 * else the Hugging Face id a GGUF file or a model folder records, else a name
 * derived from the file. The local path and the sha256 of the base's files,
 * which mean nothing on another machine, go to potluck's own file beside it
 * (potluck_base.json). */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "../core/json.h"
#include "../core/sha256.h"
#include "export.h"

/* "Name.Q4_K_M" or "name-f16" -> "Name" / "name": a trailing quantization tag
 * is not part of the model's name. */
static void strip_quant_tag(char *s) {
    static const char *const tags[] = {"q2_k", "q3_k_s", "q3_k_m", "q3_k_l", "q4_0", "q4_1", "q4_k_s", "q4_k_m",
                                       "q5_0", "q5_1", "q5_k_s", "q5_k_m", "q6_k", "q8_0", "f16", "f32", "bf16",
                                       "iq4_xs", "iq4_nl", "q4_k", "q5_k", NULL};
    size_t n = strlen(s);
    for (int i = 0; tags[i]; i++) {
        size_t t = strlen(tags[i]);
        if (n > t + 1 && (s[n - t - 1] == '.' || s[n - t - 1] == '-' || s[n - t - 1] == '_') &&
            !strcasecmp(s + n - t, tags[i])) {
            s[n - t - 1] = 0;
            return;
        }
    }
}

/* An "org/name" string that is not a local path. */
static int looks_like_repo_id(const char *s) {
    if (!s || !*s || s[0] == '/' || s[0] == '.' || s[0] == '~') return 0;
    const char *sl = strchr(s, '/');
    if (!sl || strchr(sl + 1, '/') || sl == s || !sl[1]) return 0;
    struct stat st;
    return stat(s, &st) != 0; /* an existing relative path is a path */
}

static char *gguf_str(const pl_gguf *g, const char *key) {
    char *v = NULL;
    pl_err e = {0};
    if (!g || !pl_gguf_get(g, key) || pl_gguf_get_str(g, key, &v, &e)) return NULL;
    if (v && !*v) { free(v); return NULL; }
    return v;
}

/* The Hugging Face id a GGUF file records, or one derived from its file name
 * and general.organization ("HuggingFaceTB" + "SmolLM2-135M-Instruct.Q4_1.gguf"
 * -> "HuggingFaceTB/SmolLM2-135M-Instruct"). */
static char *gguf_name(const pl_model *m) {
    const pl_gguf *g = m->gguf;
    char *v = gguf_str(g, "general.source.huggingface.repository");
    if (v) return v;
    static const char *const urls[] = {"general.source.url", "general.source.repo_url", "general.url", NULL};
    for (int i = 0; urls[i]; i++) {
        if (!(v = gguf_str(g, urls[i]))) continue;
        const char *host = strstr(v, "://");
        const char *p = host ? strchr(host + 3, '/') : NULL;
        if (p && looks_like_repo_id(p + 1)) {
            char *r = strdup(p + 1);
            free(v);
            return r;
        }
        free(v);
    }
    const char *b = strrchr(m->path, '/') ? strrchr(m->path, '/') + 1 : m->path;
    char stem[512];
    snprintf(stem, sizeof stem, "%s", b);
    size_t n = strlen(stem);
    if (n > 5 && !strcasecmp(stem + n - 5, ".gguf")) stem[n - 5] = 0;
    strip_quant_tag(stem);
    if (!*stem) {
        char *nm = gguf_str(g, "general.name");
        return nm ? nm : strdup("unknown");
    }
    char *org = gguf_str(g, "general.organization");
    char out[1100];
    if (org && !strchr(org, '/') && !strchr(org, ' ')) snprintf(out, sizeof out, "%s/%s", org, stem);
    else snprintf(out, sizeof out, "%s", stem);
    free(org);
    return strdup(out);
}

/* A model folder: config.json's "_name_or_path" when it is a repository id,
 * else the folder's name. */
static char *hf_name(const pl_model *m) {
    char p[4200];
    snprintf(p, sizeof p, "%s/config.json", m->path);
    cJSON *j = NULL;
    pl_err e = {0};
    if (!pl_json_load(p, 1 << 22, &j, &e)) {
        const char *n = cJSON_GetStringValue(cJSON_GetObjectItem(j, "_name_or_path"));
        char *r = looks_like_repo_id(n) ? strdup(n) : NULL;
        cJSON_Delete(j);
        if (r) return r;
    }
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s", m->path);
    size_t k = strlen(tmp);
    while (k > 1 && tmp[k - 1] == '/') tmp[--k] = 0;
    const char *b = strrchr(tmp, '/') ? strrchr(tmp, '/') + 1 : tmp;
    return strdup(b);
}

char *pl_export_base_name(const pl_model *m, const char *given) {
    if (given && *given) return strdup(given);
    if (m->source == PL_SRC_GGUF) return gguf_name(m);
    if (m->source == PL_SRC_HF) return hf_name(m);
    if (m->source == PL_SRC_RANDOM) return strdup(m->path); /* the spec: anyone can make it again */
    const char *b = strrchr(m->path, '/') ? strrchr(m->path, '/') + 1 : m->path;
    return strdup(b);
}

static int add_file_sha(cJSON *files, const char *path, const char *name, pl_err *err) {
    uint8_t d[32];
    char hex[65];
    int rc = pl_sha256_file(path, d, err);
    if (rc) return rc;
    pl_sha256_hex(d, hex);
    cJSON_AddStringToObject(files, name, hex);
    return PL_OK;
}

int pl_export_base_record(const pl_model *m, const char *name, const char *dir, pl_err *err) {
    cJSON *j = cJSON_CreateObject(), *files = cJSON_CreateObject();
    if (!j || !files) { cJSON_Delete(j); cJSON_Delete(files); return pl_err_set(err, PL_ENOMEM, "out of memory"); }
    char *abs = m->source == PL_SRC_RANDOM ? NULL : realpath(m->path, NULL);
    cJSON_AddStringToObject(j, "base_model_name_or_path", name);
    cJSON_AddStringToObject(j, "local_path", abs ? abs : m->path);
    cJSON_AddStringToObject(j, "format", m->source == PL_SRC_GGUF ? "gguf" : m->source == PL_SRC_HF ? "hf" : m->source == PL_SRC_RANDOM ? "random" : "llama2c");
    int rc = PL_OK;
    struct stat st;
    if (m->source == PL_SRC_RANDOM) {
        /* made in memory from the spec (trainer/model_random.c): no file to hash */
    } else if (stat(m->path, &st) == 0 && S_ISDIR(st.st_mode)) {
        /* a folder: its config, tokenizer and weight files */
        DIR *d = opendir(m->path);
        struct dirent *e;
        while (!rc && d && (e = readdir(d))) {
            size_t n = strlen(e->d_name);
            int want = !strcmp(e->d_name, "config.json") || !strcmp(e->d_name, "tokenizer.json") ||
                       (n > 12 && !strcmp(e->d_name + n - 12, ".safetensors"));
            if (!want) continue;
            char p[4200];
            snprintf(p, sizeof p, "%s/%s", m->path, e->d_name);
            rc = add_file_sha(files, p, e->d_name, err);
        }
        if (d) closedir(d);
    } else {
        const char *b = strrchr(m->path, '/') ? strrchr(m->path, '/') + 1 : m->path;
        rc = add_file_sha(files, m->path, b, err);
    }
    cJSON_AddItemToObject(j, "sha256", files);
    free(abs);
    if (!rc) {
        char p[4200];
        snprintf(p, sizeof p, "%s/potluck_base.json", dir);
        rc = pl_json_write(p, j, err);
    }
    cJSON_Delete(j);
    return rc;
}
