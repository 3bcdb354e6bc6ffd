/* test_chat.c: chat rendering byte-identical to transformers, built-ins, trained spans, token masks, BOS rule. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/error.h"
#include "core/json.h"
#include "core/mapfile.h"
#include "datasets/chat.h"
#include "datasets/tokenizer.h"

static const char *shared, *refs;

static void chat_from_json(pl_chat *c, const cJSON *arr) {
    const cJSON *m;
    cJSON_ArrayForEach(m, arr) {
        pl_err e = {0};
        pl_chat_add(c, cJSON_GetObjectItem(m, "role")->valuestring, cJSON_GetObjectItem(m, "content")->valuestring, &e);
    }
}

/* Show where two strings first differ. */
static void show_diff(const char *name, const char *a, size_t an, const char *b, size_t bn) {
    size_t i = 0;
    while (i < an && i < bn && a[i] == b[i]) i++;
    fprintf(stderr, "  %s: first difference at byte %zu (ours %zu bytes, ref %zu)\n  ours: %.80s\n  ref : %.80s\n", name, i, an,
            bn, a + (i > 20 ? i - 20 : 0), b + (i > 20 ? i - 20 : 0));
}

static int py_space(unsigned char ch) { return ch == ' ' || (ch >= 9 && ch <= 13) || (ch >= 0x1c && ch <= 0x1f); }

/* The span text must be the message content (verbatim or stripped) followed by
 * at most whitespace + an end marker. */
static int span_ok(const pl_chat_text *r, const pl_span *s, const char *content) {
    const char *p = r->text + s->start;
    size_t n = s->end - s->start, cl = strlen(content);
    size_t a = 0, b = cl;
    while (a < b && py_space((unsigned char)content[a])) a++;
    while (b > a && py_space((unsigned char)content[b - 1])) b--;
    if (n >= cl && !memcmp(p, content, cl)) return 1;
    if (n >= b - a && !memcmp(p, content + a, b - a)) return 1;
    return 0;
}

static void test_reference(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/chat_templates/chat_templates.json", refs);
    cJSON *j = NULL;
    pl_err err = {0};
    int rc = pl_json_load(path, 64u << 20, &j, &err);
    CHECK(rc == 0, "load %s: %s", path, err.msg);
    if (rc) return;
    int64_t now = (int64_t)cJSON_GetObjectItem(j, "now")->valuedouble;
    const cJSON *sources = cJSON_GetObjectItem(j, "sources"), *cases = cJSON_GetObjectItem(j, "cases"),
                *convs = cJSON_GetObjectItem(j, "conversations");
    int nsrc = cJSON_GetArraySize(sources);
    CHECK(nsrc == 8, "8 template sources, got %d", nsrc);
    /* the template each source uses, as potluck gets it */
    char **tmpl = calloc((size_t)nsrc, sizeof *tmpl);
    char **bos = calloc((size_t)nsrc, sizeof *bos), **eos = calloc((size_t)nsrc, sizeof *eos);
    for (int i = 0; i < nsrc; i++) {
        const cJSON *s = cJSON_GetArrayItem(sources, i);
        const char *src = cJSON_GetObjectItem(s, "source")->valuestring;
        const cJSON *pt = cJSON_GetObjectItem(s, "template");
        const char *py_bos = cJSON_GetObjectItem(s, "bos_token")->valuestring;
        const char *py_eos = cJSON_GetObjectItem(s, "eos_token")->valuestring;
        if (!strncmp(src, "file:", 5)) {
            char *txt = NULL;
            size_t len = 0;
            rc = pl_read_file(src + 5, 1 << 20, &txt, &len, &err);
            CHECK(rc == 0, "%s: %s", src, err.msg);
            CHECK(rc == 0 && !strcmp(txt, pt->valuestring), "%s: file matches the template transformers rendered", src);
            tmpl[i] = txt;
            bos[i] = strdup(py_bos);
            eos[i] = strdup(py_eos);
            continue;
        }
        /* fixture folder or the SmolLM2 GGUF: through our tokenizer loader */
        char tp[1024];
        if (!strcmp(src, "gguf")) snprintf(tp, sizeof tp, "%s", check_env("POTLUCK_MODEL"));
        else snprintf(tp, sizeof tp, "%s/fixtures/tokenizers/%s", shared, src + 8);
        pl_tokenizer *tok = NULL;
        rc = pl_tokenizer_load(&tok, tp, &err);
        CHECK(rc == 0, "%s: pl_tokenizer_load: %s", src, err.msg);
        if (rc) continue;
        const char *ct = pl_tokenizer_chat_template(tok);
        if (cJSON_GetObjectItem(s, "no_template")) {
            CHECK(ct == NULL || !*ct, "%s: has no chat template (as transformers says)", src);
        } else {
            CHECK(ct && cJSON_IsString(pt) && !strcmp(ct, pt->valuestring), "%s: chat template text equals transformers'", src);
            tmpl[i] = ct ? strdup(ct) : NULL;
        }
        pl_chat_opts o = {0};
        pl_chat_opts_from_tokenizer(&o, tok);
        CHECK(!strcmp(o.bos_token, py_bos), "%s: bos '%s' vs transformers '%s'", src, o.bos_token, py_bos);
        CHECK(!strcmp(o.eos_token, py_eos), "%s: eos '%s' vs transformers '%s'", src, o.eos_token, py_eos);
        bos[i] = strdup(o.bos_token);
        eos[i] = strdup(o.eos_token);
        pl_tokenizer_free(tok);
    }
    int n_ok = 0, n_cases = 0, n_spans = 0;
    const cJSON *c;
    cJSON_ArrayForEach(c, cases) {
        int si = cJSON_GetObjectItem(c, "source")->valueint;
        int ci = cJSON_GetObjectItem(c, "conversation")->valueint;
        int agp = cJSON_IsTrue(cJSON_GetObjectItem(c, "add_generation_prompt"));
        const cJSON *exp = cJSON_GetObjectItem(c, "expected");
        const char *src = cJSON_GetObjectItem(cJSON_GetArrayItem(sources, si), "source")->valuestring;
        if (!tmpl[si]) continue;
        n_cases++;
        pl_chat chat = {0};
        chat_from_json(&chat, cJSON_GetArrayItem(convs, ci));
        pl_chat_opts o = {0};
        o.bos_token = bos[si];
        o.eos_token = eos[si];
        o.add_generation_prompt = agp;
        o.fixed_time = 1;
        o.now = now;
        o.mask = PL_MASK_ASSISTANT;
        pl_chat_text r;
        rc = pl_chat_render(tmpl[si], &chat, &o, &r, &err);
        if (cJSON_IsString(exp)) {
            size_t el = strlen(exp->valuestring);
            int same = rc == 0 && r.len == el && !memcmp(r.text, exp->valuestring, el);
            CHECK(same, "%s conv %d agp %d: byte-identical to transformers (%s)", src, ci, agp, rc ? err.msg : "differs");
            if (!same && rc == 0) show_diff(src, r.text, r.len, exp->valuestring, el);
            n_ok += same;
            /* each assistant message has one span holding its content */
            if (rc == 0) {
                int na = 0;
                for (int m = 0; m < chat.n; m++) na += !strcmp(chat.msg[m].role, "assistant");
                CHECK(r.n_spans == na, "%s conv %d: %d spans for %d assistant messages", src, ci, r.n_spans, na);
                for (int k = 0; k < r.n_spans; k++) {
                    CHECK(span_ok(&r, &r.spans[k], chat.msg[r.spans[k].msg].content), "%s conv %d span %d holds the content",
                          src, ci, k);
                    n_spans++;
                }
            }
        } else {
            CHECK(rc != 0, "%s conv %d agp %d: transformers raised (%s), we must fail too", src, ci, agp,
                  cJSON_GetObjectItem(c, "error")->valuestring);
        }
        if (rc == 0) pl_chat_text_free(&r);
        pl_chat_clear(&chat);
    }
    CHECK(n_cases == 84, "84 reference cases rendered, got %d", n_cases);
    printf("report: chat templates: %d/%d renderings byte-identical to transformers, %d trained spans checked\n", n_ok,
           n_cases, n_spans);
    for (int i = 0; i < nsrc; i++) {
        free(tmpl[i]);
        free(bos[i]);
        free(eos[i]);
    }
    free(tmpl);
    free(bos);
    free(eos);
    cJSON_Delete(j);
}

/* The built-in formats, exactly as docs/chat-templates.md writes them. */
static void test_builtins(void) {
    pl_chat c = {0};
    pl_err err = {0};
    pl_chat_add(&c, "system", "SYS", &err);
    pl_chat_add(&c, "user", "U1", &err);
    pl_chat_add(&c, "assistant", "A1", &err);
    pl_chat_add(&c, "user", "U2", &err);
    pl_chat_add(&c, "assistant", "A2", &err);
    static const struct {
        const char *name, *bos, *eos, *want;
        const char *span1; /* text of the first trained span */
    } cases[] = {
        {"chatml", "", "<|im_end|>",
         "<|im_start|>system\nSYS<|im_end|>\n<|im_start|>user\nU1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n"
         "<|im_start|>user\nU2<|im_end|>\n<|im_start|>assistant\nA2<|im_end|>\n",
         "A1<|im_end|>"},
        {"llama2", "<s>", "</s>", "<s>[INST] <<SYS>>\nSYS\n<</SYS>>\n\nU1 [/INST] A1 </s><s>[INST] U2 [/INST] A2 </s>", "A1 </s>"},
        {"llama3", "<|begin_of_text|>", "<|eot_id|>",
         "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nSYS<|eot_id|><|start_header_id|>user<|end_header_id|>"
         "\n\nU1<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nA1<|eot_id|><|start_header_id|>user<|end_header_id|>"
         "\n\nU2<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nA2<|eot_id|>",
         "A1<|eot_id|>"},
        {"mistral", "<s>", "</s>", "<s>[INST] SYS\n\nU1 [/INST]A1</s>[INST] U2 [/INST]A2</s>", "A1</s>"},
        {"alpaca", "", "</s>", "SYS\n\n### Instruction:\nU1\n\n### Response:\nA1</s>\n\n### Instruction:\nU2\n\n### Response:\nA2</s>\n\n",
         "A1</s>"},
        {"vicuna", "", "</s>", "SYS USER: U1 ASSISTANT: A1</s>USER: U2 ASSISTANT: A2</s>", "A1</s>"},
        {"guanaco", "", "</s>", "SYS\n### Human: U1### Assistant: A1</s>### Human: U2### Assistant: A2</s>", "A1</s>"},
    };
    int nb = 0;
    for (const char *const *n = pl_chat_builtin_names(); *n; n++) nb++;
    CHECK(nb == 7, "7 built-ins, got %d", nb);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        pl_chat_opts o = {0};
        o.bos_token = cases[i].bos;
        o.eos_token = cases[i].eos;
        pl_chat_text r;
        int rc = pl_chat_render(cases[i].name, &c, &o, &r, &err);
        CHECK(rc == 0, "%s: %s", cases[i].name, err.msg);
        if (rc) continue;
        CHECK(!strcmp(r.text, cases[i].want), "%s renders as documented:\n%s", cases[i].name, r.text);
        CHECK(r.n_spans == 2, "%s: 2 trained spans, got %d", cases[i].name, r.n_spans);
        if (r.n_spans >= 1) {
            size_t l = r.spans[0].end - r.spans[0].start;
            CHECK(l == strlen(cases[i].span1) && !memcmp(r.text + r.spans[0].start, cases[i].span1, l),
                  "%s: first span is '%s', got '%.*s'", cases[i].name, cases[i].span1, (int)l, r.text + r.spans[0].start);
        }
        pl_chat_text_free(&r);
        /* last-assistant mode: one span, the last reply */
        o.mask = PL_MASK_LAST;
        rc = pl_chat_render(cases[i].name, &c, &o, &r, &err);
        CHECK(rc == 0 && r.n_spans == 1 && r.spans[0].msg == 4, "%s: last mode has one span on message 4", cases[i].name);
        if (rc == 0) pl_chat_text_free(&r);
        /* all mode: the whole text */
        o.mask = PL_MASK_ALL;
        rc = pl_chat_render(cases[i].name, &c, &o, &r, &err);
        CHECK(rc == 0 && r.n_spans == 1 && r.spans[0].start == 0 && r.spans[0].end == r.len, "%s: all mode covers the text",
              cases[i].name);
        if (rc == 0) pl_chat_text_free(&r);
    }
    /* add_generation_prompt on the built-ins that have one */
    pl_chat u = {0};
    pl_chat_add(&u, "user", "Hi", &err);
    pl_chat_opts o = {0};
    o.add_generation_prompt = 1;
    pl_chat_text r;
    int rc = pl_chat_render("chatml", &u, &o, &r, &err);
    CHECK(rc == 0 && !strcmp(r.text, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n") && r.n_spans == 0,
          "chatml generation prompt");
    if (!rc) pl_chat_text_free(&r);
    rc = pl_chat_render("alpaca", &u, &o, &r, &err);
    CHECK(rc == 0 && !strcmp(r.text, "Below is an instruction that describes a task. Write a response that appropriately "
                                     "completes the request.\n\n### Instruction:\nHi\n\n### Response:\n"),
          "alpaca generation prompt and default preamble");
    if (!rc) pl_chat_text_free(&r);
    /* wrong role order: llama2 raises like Meta's template */
    pl_chat bad = {0};
    pl_chat_add(&bad, "user", "a", &err);
    pl_chat_add(&bad, "user", "b", &err);
    rc = pl_chat_render("llama2", &bad, &o, &r, &err);
    CHECK(rc == PL_EINVAL && strstr(err.msg, "raise_exception") && strstr(err.msg, "alternate"), "llama2 order error: %s",
          err.msg);
    /* mask needs assistant content the template drops */
    pl_chat_opts o2 = {0};
    rc = pl_chat_render("{% for m in messages %}{% if m.role == 'user' %}{{ m.content }}{% endif %}{% endfor %}", &c, &o2, &r,
                        &err);
    CHECK(rc == PL_EUNSUPPORTED && strstr(err.msg, "does not appear"), "dropped assistant message: %s", err.msg);
    pl_chat lc = {0};
    pl_chat_add(&lc, "user", "hi", &err);
    pl_chat_add(&lc, "assistant", "hello", &err);
    rc = pl_chat_render("{% for m in messages %}{{ m.content|upper }}{% endfor %}", &lc, &o2, &r, &err);
    CHECK(rc == PL_EUNSUPPORTED && strstr(err.msg, "rewritten"), "rewritten content: %s", rc ? err.msg : "no error");
    if (!rc) pl_chat_text_free(&r);
    o2.mask = PL_MASK_ALL;
    rc = pl_chat_render("{% for m in messages %}{{ m.content|upper }}{% endfor %}", &lc, &o2, &r, &err);
    CHECK(rc == 0 && !strcmp(r.text, "HIHELLO"), "all mode does not need spans");
    pl_chat_clear(&lc);
    if (!rc) pl_chat_text_free(&r);
    pl_mask_mode mm;
    CHECK(pl_mask_mode_parse("last-assistant", &mm, &err) == 0 && mm == PL_MASK_LAST, "mask mode parse");
    CHECK(pl_mask_mode_parse("bogus", &mm, &err) == PL_EINVAL, "bad mask mode rejected");
    /* io and text renderings */
    rc = pl_chat_render_io("Q: 1+1?\nA:", " 2", "</s>", &r, &err);
    CHECK(rc == 0 && !strcmp(r.text, "Q: 1+1?\nA: 2</s>") && r.n_spans == 1 && r.spans[0].start == 10 && r.spans[0].end == 16,
          "io: output and eos trained");
    if (!rc) pl_chat_text_free(&r);
    pl_chat_clear(&bad);
    pl_chat_clear(&u);
    pl_chat_clear(&c);
}

static int count_id(const pl_chat_tokens *t, int id) {
    int k = 0;
    for (int i = 0; i < t->n; i++) k += t->ids[i] == id;
    return k;
}

/* Decode the trained tokens back to text (special tokens rendered). */
static void trained_text(const pl_tokenizer *tok, const pl_chat_tokens *t, char *out, size_t cap) {
    size_t k = 0;
    for (int i = 0; i < t->n; i++) {
        if (!t->mask[i]) continue;
        char buf[256];
        int n = pl_tokenizer_decode(tok, i ? t->ids[i - 1] : -1, t->ids[i], 1, buf, sizeof buf);
        if (k + (size_t)n + 1 < cap) {
            memcpy(out + k, buf, (size_t)n);
            k += (size_t)n;
        }
    }
    out[k] = 0;
}

static void test_tokens(void) {
    pl_err err = {0};
    char tp[1024];
    /* tiny-random-Llama: add_bos_token true, template writes bos_token: exactly one BOS at the start */
    snprintf(tp, sizeof tp, "%s/fixtures/tokenizers/tiny-random-LlamaForCausalLM", shared);
    pl_tokenizer *llama = NULL;
    int rc = pl_tokenizer_load(&llama, tp, &err);
    CHECK(rc == 0, "load %s: %s", tp, err.msg);
    if (rc == 0) {
        CHECK(pl_tokenizer_add_bos(llama), "tiny-random-Llama adds BOS");
        pl_chat c = {0};
        pl_chat_add(&c, "user", "Hello", &err);
        pl_chat_add(&c, "assistant", "Hi there", &err);
        pl_chat_add(&c, "user", "Bye", &err);
        pl_chat_add(&c, "assistant", "Goodbye", &err);
        pl_chat_opts o = {0};
        pl_chat_opts_from_tokenizer(&o, llama);
        pl_chat_text r;
        rc = pl_chat_render(pl_tokenizer_chat_template(llama), &c, &o, &r, &err);
        CHECK(rc == 0 && !strncmp(r.text, "<s>[INST]", 9), "llama2 fixture renders with BOS text: %s", rc ? err.msg : r.text);
        if (rc == 0) {
            pl_chat_tokens t;
            rc = pl_chat_tokenize(llama, &r, &t, &err);
            CHECK(rc == 0, "tokenize: %s", err.msg);
            if (rc == 0) {
                int b = pl_tokenizer_bos(llama);
                CHECK(t.bos_in_text == 1, "BOS text detected in the rendering");
                CHECK(t.n > 2 && t.ids[0] == b && t.ids[1] != b, "exactly one BOS at the start (no double BOS)");
                CHECK(count_id(&t, b) == 2, "one BOS per [INST] turn, 2 in all, got %d", count_id(&t, b));
                /* raw encode with add_bos would have doubled it: that is what the rule prevents */
                int32_t *ids = NULL;
                int n = 0;
                pl_tokenizer_encode(llama, r.text, r.len, 1, 1, &ids, &n, &err);
                CHECK(n > 2 && ids[0] == b && ids[1] == b, "plain encode with add_bos gives the double BOS the rule avoids");
                free(ids);
                char tt[512];
                trained_text(llama, &t, tt, sizeof tt);
                CHECK(strstr(tt, "Hi there") && strstr(tt, "Goodbye") && strstr(tt, "</s>") && !strstr(tt, "Hello") &&
                          !strstr(tt, "INST"),
                      "trained tokens are the replies and their </s>: '%s'", tt);
                pl_chat_tokens_free(&t);
            }
            pl_chat_text_free(&r);
        }
        /* a template without BOS text: the tokenizer's BOS is added once */
        o.mask = PL_MASK_ASSISTANT;
        rc = pl_chat_render("vicuna", &c, &o, &r, &err);
        if (rc == 0) {
            pl_chat_tokens t;
            rc = pl_chat_tokenize(llama, &r, &t, &err);
            CHECK(rc == 0 && t.bos_in_text == 0 && t.ids[0] == pl_tokenizer_bos(llama) &&
                      count_id(&t, pl_tokenizer_bos(llama)) == 1,
                  "vicuna: tokenizer adds the one BOS");
            if (rc == 0) pl_chat_tokens_free(&t);
            pl_chat_text_free(&r);
        }
        /* special tokens the tokenizer lacks */
        rc = pl_chat_check_special(llama, "chatml", &c, &o, &err);
        CHECK(rc == PL_EUNSUPPORTED && strstr(err.msg, "<|im_start|>"), "chatml on a Llama-2 vocabulary is refused: %s", err.msg);
        rc = pl_chat_check_special(llama, "llama2", &c, &o, &err);
        CHECK(rc == 0, "llama2 template fits the Llama vocabulary: %s", err.msg);
        pl_chat_clear(&c);
        pl_tokenizer_free(llama);
    }
    /* SmolLM2 GGUF (ChatML): masks in the three modes */
    pl_tokenizer *smol = NULL;
    rc = pl_tokenizer_load(&smol, check_env("POTLUCK_MODEL"), &err);
    CHECK(rc == 0, "load SmolLM2: %s", err.msg);
    if (rc) return;
    pl_chat c = {0};
    pl_chat_add(&c, "system", "You are a helpful assistant.", &err);
    pl_chat_add(&c, "user", "2+2?", &err);
    pl_chat_add(&c, "assistant", "4", &err);
    pl_chat_add(&c, "user", "And 3+3?", &err);
    pl_chat_add(&c, "assistant", "6, of course.", &err);
    static const char *want[3] = {"4<|im_end|>6, of course.<|im_end|>", NULL, "6, of course.<|im_end|>"};
    for (int mode = 0; mode < 3; mode++) {
        pl_chat_opts o = {0};
        pl_chat_opts_from_tokenizer(&o, smol);
        o.mask = (pl_mask_mode)mode;
        pl_chat_text r;
        rc = pl_chat_render(pl_tokenizer_chat_template(smol), &c, &o, &r, &err);
        CHECK(rc == 0, "smollm2 render: %s", err.msg);
        if (rc) continue;
        pl_chat_tokens t;
        rc = pl_chat_tokenize(smol, &r, &t, &err);
        CHECK(rc == 0, "smollm2 tokenize: %s", err.msg);
        if (rc == 0) {
            int ntr = 0;
            for (int i = 0; i < t.n; i++) ntr += t.mask[i];
            if (mode == PL_MASK_ALL) {
                CHECK(ntr == t.n, "all mode trains every token (%d of %d)", ntr, t.n);
            } else {
                char tt[512];
                trained_text(smol, &t, tt, sizeof tt);
                CHECK(!strcmp(tt, want[mode]), "mode %d trains exactly '%s', got '%s'", mode, want[mode], tt);
            }
            CHECK(t.ids[0] != pl_tokenizer_bos(smol) || !pl_tokenizer_add_bos(smol), "SmolLM2: no BOS added");
            pl_chat_tokens_free(&t);
        }
        pl_chat_text_free(&r);
    }
    pl_chat_opts o = {0};
    pl_chat_opts_from_tokenizer(&o, smol);
    rc = pl_chat_check_special(smol, pl_tokenizer_chat_template(smol), &c, &o, &err);
    CHECK(rc == 0, "SmolLM2 has every token its template writes: %s", err.msg);
    rc = pl_chat_check_special(smol, "llama3", &c, &o, &err);
    CHECK(rc == PL_EUNSUPPORTED && strstr(err.msg, "<|start_header_id|>"), "llama3 on SmolLM2 refused: %s", err.msg);
    pl_chat_clear(&c);
    pl_tokenizer_free(smol);
}

int main(void) {
    shared = check_env("POTLUCK_SHARED");
    refs = check_env("POTLUCK_REFS");
    test_reference();
    test_builtins();
    test_tokens();
    return check_summary("test_chat");
}
