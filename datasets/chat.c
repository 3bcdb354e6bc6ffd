/* chat.c: conversations rendered through chat templates, trained spans and token masks. */
#include "chat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

#include "jinja.h"

int pl_chat_add(pl_chat *c, const char *role, const char *content, pl_err *err) {
    if (!role || !content) return pl_err_set(err, PL_EINVAL, "chat: message needs a role and a content");
    if (c->n == c->cap) {
        int nc = c->cap ? c->cap * 2 : 8;
        pl_chat_msg *nm = realloc(c->msg, (size_t)nc * sizeof *nm);
        if (!nm) return pl_err_set(err, PL_ENOMEM, "chat: out of memory");
        c->msg = nm;
        c->cap = nc;
    }
    char *r = strdup(role), *t = strdup(content);
    if (!r || !t) {
        free(r);
        free(t);
        return pl_err_set(err, PL_ENOMEM, "chat: out of memory");
    }
    c->msg[c->n].role = r;
    c->msg[c->n].content = t;
    c->n++;
    return PL_OK;
}

void pl_chat_clear(pl_chat *c) {
    for (int i = 0; i < c->n; i++) {
        free(c->msg[i].role);
        free(c->msg[i].content);
    }
    free(c->msg);
    c->msg = NULL;
    c->n = c->cap = 0;
}

int pl_mask_mode_parse(const char *s, pl_mask_mode *out, pl_err *err) {
    if (!strcmp(s, "assistant")) *out = PL_MASK_ASSISTANT;
    else if (!strcmp(s, "all")) *out = PL_MASK_ALL;
    else if (!strcmp(s, "last") || !strcmp(s, "last-assistant")) *out = PL_MASK_LAST;
    else return pl_err_set(err, PL_EINVAL, "mask mode '%s': expected assistant, all or last-assistant (also spelled last)", s);
    return PL_OK;
}

/* ------------------------------------------------------------------ built-ins */

#define ALTERNATE(name)                                                                                          \
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('" name                    \
    ": roles must alternate user/assistant after an optional system message') }}{% endif %}"
#define BADROLE(name) "{% else %}{{ raise_exception('" name ": unsupported role ' + message['role']) }}"

static const struct {
    const char *name, *src;
} builtins[] = {
    {"chatml",
     "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
     "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"},
    {"llama2",
     "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
     "{% set system_message = '<<SYS>>\\n' + messages[0]['content'] + '\\n<</SYS>>\\n\\n' %}"
     "{% else %}{% set loop_messages = messages %}{% set system_message = '' %}{% endif %}"
     "{% for message in loop_messages %}" ALTERNATE("llama2")
     "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + (system_message if loop.first else '') + "
     "message['content'].strip() + ' [/INST]' }}"
     "{% else %}{{ ' ' + message['content'].strip() + ' ' + eos_token }}{% endif %}{% endfor %}"},
    {"llama3",
     "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + "
     "message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
     "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"},
    {"mistral",
     "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set system_message = messages[0]['content'] + '\\n\\n' %}"
     "{% set loop_messages = messages[1:] %}{% else %}{% set system_message = '' %}{% set loop_messages = messages %}{% endif %}"
     "{% for message in loop_messages %}" ALTERNATE("mistral")
     "{% if message['role'] == 'user' %}{{ '[INST] ' + (system_message if loop.first else '') + message['content'] + ' [/INST]' }}"
     "{% else %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}"},
    {"alpaca",
     "{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] + '\\n\\n' }}{% set loop_messages = messages[1:] %}"
     "{% else %}{{ 'Below is an instruction that describes a task. Write a response that appropriately completes the request.\\n\\n' }}"
     "{% set loop_messages = messages %}{% endif %}{% for message in loop_messages %}"
     "{% if message['role'] == 'user' %}{{ '### Instruction:\\n' + message['content'] + '\\n\\n' }}"
     "{% elif message['role'] == 'assistant' %}{{ '### Response:\\n' + message['content'] + eos_token + '\\n\\n' }}"
     BADROLE("alpaca") "{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '### Response:\\n' }}{% endif %}"},
    {"vicuna",
     "{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] + ' ' }}{% set loop_messages = messages[1:] %}"
     "{% else %}{{ \"A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
     "detailed, and polite answers to the user's questions. \" }}{% set loop_messages = messages %}{% endif %}"
     "{% for message in loop_messages %}{% if message['role'] == 'user' %}{{ 'USER: ' + message['content'] + ' ' }}"
     "{% elif message['role'] == 'assistant' %}{{ 'ASSISTANT: ' + message['content'] + eos_token }}"
     BADROLE("vicuna") "{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"},
    {"guanaco",
     "{% for message in messages %}{% if message['role'] == 'system' %}{{ message['content'] + '\\n' }}"
     "{% elif message['role'] == 'user' %}{{ '### Human: ' + message['content'] }}"
     "{% elif message['role'] == 'assistant' %}{{ '### Assistant: ' + message['content'] + eos_token }}"
     BADROLE("guanaco") "{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '### Assistant:' }}{% endif %}"},
};

static const char *const builtin_names[] = {"chatml", "llama2", "llama3", "mistral", "alpaca", "vicuna", "guanaco", NULL};

const char *pl_chat_builtin(const char *name) {
    for (size_t i = 0; i < sizeof builtins / sizeof *builtins; i++)
        if (!strcmp(builtins[i].name, name)) return builtins[i].src;
    return NULL;
}

const char *const *pl_chat_builtin_names(void) { return builtin_names; }

/* ------------------------------------------------------------------ rendering */

void pl_chat_text_free(pl_chat_text *r) {
    free(r->text);
    free(r->spans);
    memset(r, 0, sizeof *r);
}

/* Render with message contents taken from contents[] (NULL = the real ones). */
static int render_with(const pl_jinja *t, const pl_chat *c, const pl_chat_opts *o, char **contents, char **out,
                       size_t *len, pl_err *err) {
    cJSON *vars = cJSON_CreateObject();
    cJSON *msgs = cJSON_AddArrayToObject(vars, "messages");
    int ok = vars && msgs;
    for (int i = 0; ok && i < c->n; i++) {
        cJSON *m = cJSON_CreateObject();
        ok = m && cJSON_AddItemToArray(msgs, m) && cJSON_AddStringToObject(m, "role", c->msg[i].role) &&
             cJSON_AddStringToObject(m, "content", contents ? contents[i] : c->msg[i].content);
    }
    ok = ok && cJSON_AddStringToObject(vars, "bos_token", o->bos_token ? o->bos_token : "") &&
         cJSON_AddStringToObject(vars, "eos_token", o->eos_token ? o->eos_token : "") &&
         cJSON_AddBoolToObject(vars, "add_generation_prompt", o->add_generation_prompt);
    if (!ok) {
        cJSON_Delete(vars);
        return pl_err_set(err, PL_ENOMEM, "chat: out of memory");
    }
    pl_jinja_opts jo = {0};
    jo.fixed_time = o->fixed_time;
    jo.now = o->now;
    int rc = pl_jinja_render(t, vars, &jo, out, len, err);
    cJSON_Delete(vars);
    return rc;
}

static int parse_tmpl(const char *tmpl, pl_jinja **jt, pl_err *err) {
    const char *b = pl_chat_builtin(tmpl);
    const char *name = b ? tmpl : "chat_template";
    if (b) tmpl = b;
    return pl_jinja_parse(jt, tmpl, strlen(tmpl), name, err);
}

#define SENT_FMT "\x01PLMSG%d\x02"

static char **make_sentinels(int n) {
    char **s = calloc((size_t)n + 1, sizeof *s);
    if (!s) return NULL;
    for (int i = 0; i < n; i++) {
        s[i] = malloc(24);
        if (!s[i]) {
            for (int k = 0; k < i; k++) free(s[k]);
            free(s);
            return NULL;
        }
        snprintf(s[i], 24, SENT_FMT, i);
    }
    return s;
}
static void free_sentinels(char **s, int n) {
    if (!s) return;
    for (int i = 0; i < n; i++) free(s[i]);
    free(s);
}

static int py_space(unsigned char ch) { return ch == ' ' || (ch >= 9 && ch <= 13) || (ch >= 0x1c && ch <= 0x1f); }

/* Where each message's content sits in the real text: cs[i], ce[i] (SIZE_MAX
 * when the template does not show message i). */
static int locate(const char *real, size_t rlen, const char *sent, size_t slen, const pl_chat *c, size_t *cs,
                  size_t *ce, pl_err *err) {
    int n = c->n;
    size_t *pos = malloc((size_t)(n ? n : 1) * sizeof *pos);
    int *order = malloc((size_t)(n ? n : 1) * sizeof *order);
    if (!pos || !order) {
        free(pos);
        free(order);
        return pl_err_set(err, PL_ENOMEM, "chat: out of memory");
    }
    int k = 0;
    for (int i = 0; i < n; i++) {
        cs[i] = ce[i] = SIZE_MAX;
        char mk[24];
        snprintf(mk, sizeof mk, SENT_FMT, i);
        const char *f = memmem(sent, slen, mk, strlen(mk));
        if (!f) continue;
        const char *g = memmem(f + 1, slen - (size_t)(f + 1 - sent), mk, strlen(mk));
        if (g) { /* shown twice: cannot tell which copy is the turn */
            cs[i] = ce[i] = SIZE_MAX - 1;
            continue;
        }
        pos[i] = (size_t)(f - sent);
        /* insertion sort by position */
        int j = k;
        while (j > 0 && pos[order[j - 1]] > pos[i]) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = i;
        k++;
    }
    size_t rp = 0, sp = 0;
    int rc = PL_OK;
    for (int q = 0; q < k; q++) {
        int i = order[q];
        size_t hl = pos[i] - sp; /* template text before this content */
        if (rp + hl > rlen || memcmp(real + rp, sent + sp, hl)) {
            rc = pl_err_set(err, PL_EUNSUPPORTED,
                            "chat template: the text before message %d differs between renderings (the template "
                            "branches on message content), so its trained span cannot be located",
                            i);
            break;
        }
        rp += hl;
        char mk[24];
        snprintf(mk, sizeof mk, SENT_FMT, i);
        sp = pos[i] + strlen(mk);
        /* the template text after this content, up to the next marker */
        size_t nsp = q + 1 < k ? pos[order[q + 1]] : slen;
        const char *after = sent + sp;
        size_t al = nsp - sp;
        /* candidate contents: verbatim, then Python-strip()ped */
        const char *ct = c->msg[i].content;
        size_t cl = strlen(ct);
        size_t a0 = 0, b0 = cl;
        while (a0 < b0 && py_space((unsigned char)ct[a0])) a0++;
        while (b0 > a0 && py_space((unsigned char)ct[b0 - 1])) b0--;
        int found = 0;
        /* verbatim, strip(), rstrip(), lstrip() (a template may strip a
         * string the content is only part of) */
        for (int cand = 0; cand < 4 && !found; cand++) {
            size_t pa = (cand == 1 || cand == 3) ? a0 : 0;
            size_t pb = (cand == 1 || cand == 2) ? b0 : cl;
            if (cand == 2) { pb = cl; while (pb > 0 && py_space((unsigned char)ct[pb - 1])) pb--; }
            if (cand == 3) pb = cl;
            const char *p = ct + pa;
            size_t pl = pb > pa ? pb - pa : 0;
            if (rp + pl > rlen || memcmp(real + rp, p, pl)) continue;
            if (rp + pl + al > rlen) continue;
            if (memcmp(real + rp + pl, after, al)) continue;
            cs[i] = rp;
            ce[i] = rp + pl;
            rp += pl;
            found = 1;
        }
        if (!found) {
            rc = pl_err_set(err, PL_EUNSUPPORTED,
                            "chat template: message %d (%s) is rewritten by the template beyond strip(), so its trained "
                            "span cannot be located",
                            i, c->msg[i].role);
            break;
        }
    }
    free(pos);
    free(order);
    return rc;
}

static const char *end_markers[] = {"<|im_end|>", "<|eot_id|>", "<|end|>", "<|eom_id|>", "<end_of_turn>", "</s>",
                                    "<|endoftext|>", NULL};

/* Length of the end-of-turn marker at s (optional whitespace + marker), or 0. */
static size_t marker_len(const char *s, size_t n, const char *eos) {
    size_t w = 0;
    while (w < n && py_space((unsigned char)s[w])) w++;
    if (eos && *eos) {
        size_t el = strlen(eos);
        if (w + el <= n && !memcmp(s + w, eos, el)) return w + el;
    }
    for (int i = 0; end_markers[i]; i++) {
        size_t ml = strlen(end_markers[i]);
        if (w + ml <= n && !memcmp(s + w, end_markers[i], ml)) return w + ml;
    }
    return 0;
}

int pl_chat_render(const char *tmpl, const pl_chat *c, const pl_chat_opts *o, pl_chat_text *out, pl_err *err) {
    memset(out, 0, sizeof *out);
    if (!tmpl) return pl_err_set(err, PL_EINVAL, "chat: no template (the model has none: pass a built-in name)");
    if (c->n == 0) return pl_err_set(err, PL_EINVAL, "chat: empty conversation");
    pl_jinja *jt;
    int rc = parse_tmpl(tmpl, &jt, err);
    if (rc) return rc;
    rc = render_with(jt, c, o, NULL, &out->text, &out->len, err);
    if (rc) goto done;
    if (o->mask == PL_MASK_ALL) {
        out->spans = malloc(sizeof *out->spans);
        if (!out->spans) { rc = pl_err_set(err, PL_ENOMEM, "chat: out of memory"); goto done; }
        out->spans[0] = (pl_span){0, out->len, -1};
        out->n_spans = out->len ? 1 : 0;
        goto done;
    }
    int last = -1;
    for (int i = 0; i < c->n; i++)
        if (!strcmp(c->msg[i].role, "assistant")) last = i;
    if (last < 0) goto done; /* nothing to train */
    char **sent = make_sentinels(c->n);
    if (!sent) { rc = pl_err_set(err, PL_ENOMEM, "chat: out of memory"); goto done; }
    char *stext = NULL;
    size_t slen = 0;
    rc = render_with(jt, c, o, sent, &stext, &slen, err);
    free_sentinels(sent, c->n);
    if (rc) {
        pl_err_prefix(err, "rendering with placeholder contents (to locate the trained spans)");
        goto done;
    }
    size_t *cs = malloc((size_t)c->n * sizeof *cs), *ce = malloc((size_t)c->n * sizeof *ce);
    out->spans = malloc((size_t)c->n * sizeof *out->spans);
    if (!cs || !ce || !out->spans) {
        rc = pl_err_set(err, PL_ENOMEM, "chat: out of memory");
    } else {
        rc = locate(out->text, out->len, stext, slen, c, cs, ce, err);
        for (int i = 0; !rc && i < c->n; i++) {
            if (strcmp(c->msg[i].role, "assistant") || (o->mask == PL_MASK_LAST && i != last)) continue;
            if (cs[i] == SIZE_MAX - 1) {
                rc = pl_err_set(err, PL_EUNSUPPORTED,
                                "chat template: assistant message %d appears more than once in the rendering", i);
                break;
            }
            if (cs[i] == SIZE_MAX) {
                rc = pl_err_set(err, PL_EUNSUPPORTED,
                                "chat template: assistant message %d does not appear in the rendering (the template "
                                "drops it), so it cannot be trained",
                                i);
                break;
            }
            size_t e = ce[i] + marker_len(out->text + ce[i], out->len - ce[i], o->eos_token);
            out->spans[out->n_spans++] = (pl_span){cs[i], e, i};
        }
        /* spans come in message order; sort by start (templates may reorder) */
        for (int a = 1; a < out->n_spans; a++) {
            pl_span s = out->spans[a];
            int b = a;
            while (b > 0 && out->spans[b - 1].start > s.start) {
                out->spans[b] = out->spans[b - 1];
                b--;
            }
            out->spans[b] = s;
        }
    }
    free(cs);
    free(ce);
    free(stext);
done:
    pl_jinja_free(jt);
    if (rc) pl_chat_text_free(out);
    return rc;
}

int pl_chat_render_text(const char *text, pl_chat_text *out, pl_err *err) {
    memset(out, 0, sizeof *out);
    out->len = strlen(text);
    out->text = strdup(text);
    out->spans = malloc(sizeof *out->spans);
    if (!out->text || !out->spans) {
        pl_chat_text_free(out);
        return pl_err_set(err, PL_ENOMEM, "chat: out of memory");
    }
    out->spans[0] = (pl_span){0, out->len, -1};
    out->n_spans = out->len ? 1 : 0;
    return PL_OK;
}

int pl_chat_render_io(const char *input, const char *output, const char *eos, pl_chat_text *out, pl_err *err) {
    memset(out, 0, sizeof *out);
    size_t il = strlen(input), ol = strlen(output), el = eos ? strlen(eos) : 0;
    out->len = il + ol + el;
    out->text = malloc(out->len + 1);
    out->spans = malloc(sizeof *out->spans);
    if (!out->text || !out->spans) {
        pl_chat_text_free(out);
        return pl_err_set(err, PL_ENOMEM, "chat: out of memory");
    }
    memcpy(out->text, input, il);
    memcpy(out->text + il, output, ol);
    if (el) memcpy(out->text + il + ol, eos, el);
    out->text[out->len] = 0;
    out->spans[0] = (pl_span){il, out->len, -1};
    out->n_spans = out->len > il ? 1 : 0;
    return PL_OK;
}

void pl_chat_opts_from_tokenizer(pl_chat_opts *o, const pl_tokenizer *t) {
    int b = pl_tokenizer_bos(t), e = pl_tokenizer_eos(t);
    const char *bp = b >= 0 ? pl_tokenizer_piece(t, b) : NULL;
    const char *ep = e >= 0 ? pl_tokenizer_piece(t, e) : NULL;
    o->bos_token = bp ? bp : "";
    o->eos_token = ep ? ep : "";
}

int pl_chat_check_special(const pl_tokenizer *t, const char *tmpl, const pl_chat *c, const pl_chat_opts *o,
                          pl_err *err) {
    pl_jinja *jt;
    int rc = parse_tmpl(tmpl, &jt, err);
    if (rc) return rc;
    char **sent = make_sentinels(c->n);
    char *s = NULL;
    size_t n = 0;
    if (!sent) rc = pl_err_set(err, PL_ENOMEM, "chat: out of memory");
    else rc = render_with(jt, c, o, sent, &s, &n, err);
    free_sentinels(sent, c->n);
    pl_jinja_free(jt);
    if (rc) return rc;
    /* scan <|...|> runs, plus the BOS/EOS texts, in the template's own text */
    for (size_t i = 0; i + 1 < n && !rc; i++) {
        size_t len = 0;
        if (s[i] == '<' && s[i + 1] == '|') {
            size_t j = i + 2;
            while (j + 1 < n && j - i < 80 && !(s[j] == '|' && s[j + 1] == '>') && !py_space((unsigned char)s[j])) j++;
            if (j + 1 < n && s[j] == '|' && s[j + 1] == '>') len = j + 2 - i;
        }
        const char *toks[2] = {o->bos_token, o->eos_token};
        for (int q = 0; q < 2 && !len; q++)
            if (toks[q] && *toks[q] && !strncmp(s + i, toks[q], strlen(toks[q]))) len = strlen(toks[q]);
        if (!len) continue;
        char buf[96];
        snprintf(buf, sizeof buf, "%.*s", (int)len, s + i);
        if (pl_tokenizer_find(t, buf) < 0)
            rc = pl_err_set(err, PL_EUNSUPPORTED,
                            "chat template writes the special token '%s', but the tokenizer (%d tokens) has no such "
                            "token, so it would be split into ordinary pieces; use the model's own template or a "
                            "built-in whose tokens the model has",
                            buf, pl_tokenizer_vocab(t));
        i += len - 1;
    }
    free(s);
    return rc;
}

void pl_chat_tokens_free(pl_chat_tokens *t) {
    free(t->ids);
    free(t->mask);
    free(t->offs);
    memset(t, 0, sizeof *t);
}

int pl_chat_tokenize(const pl_tokenizer *t, const pl_chat_text *r, pl_chat_tokens *out, pl_err *err) {
    memset(out, 0, sizeof *out);
    int add_bos = pl_tokenizer_add_bos(t);
    int bos = pl_tokenizer_bos(t);
    const char *bp = bos >= 0 ? pl_tokenizer_piece(t, bos) : NULL;
    if (add_bos && bp && *bp && r->len >= strlen(bp) && !memcmp(r->text, bp, strlen(bp))) {
        out->bos_in_text = 1;
        add_bos = 0;
    }
    int32_t *offs = NULL;
    int rc = pl_tokenizer_encode_offsets(t, r->text, r->len, add_bos, 1, &out->ids, &offs, &out->n, err);
    if (rc) return rc;
    out->offs = offs;
    out->mask = calloc(out->n ? (size_t)out->n : 1, 1);
    if (!out->mask) {
        pl_chat_tokens_free(out);
        return pl_err_set(err, PL_ENOMEM, "chat: out of memory");
    }
    int s = 0;
    for (int i = 0; i < out->n; i++) {
        size_t a = (size_t)offs[i];
        size_t b = i + 1 < out->n ? (size_t)offs[i + 1] : r->len;
        if (b < a) b = a;
        if (b == a) continue; /* inserted token (BOS, dummy prefix): no bytes of its own */
        while (s < r->n_spans && r->spans[s].end <= a) s++;
        for (int q = s; q < r->n_spans && r->spans[q].start < b; q++)
            if (r->spans[q].end > a) {
                out->mask[i] = 1;
                break;
            }
    }
    return PL_OK;
}

int pl_chat_encode_prompt(const pl_tokenizer *t, const pl_chat *c, int32_t **ids, int *n, pl_err *err) {
    const char *tmpl = pl_tokenizer_chat_template(t);
    if (!tmpl) {
        if (pl_tokenizer_find(t, "<|im_start|>") < 0 || pl_tokenizer_find(t, "<|im_end|>") < 0)
            return pl_err_set(err, PL_EUNSUPPORTED,
                              "the model has no chat template (tokenizer.chat_template) and no <|im_start|> token for ChatML");
        tmpl = "chatml";
    }
    pl_chat_text r = {0};
    pl_chat_tokens tk = {0};
    pl_chat_opts o = {0};
    pl_chat_opts_from_tokenizer(&o, t);
    o.add_generation_prompt = 1;
    o.mask = PL_MASK_ALL;
    int rc = pl_chat_render(tmpl, c, &o, &r, err);
    if (!rc) rc = pl_chat_tokenize(t, &r, &tk, err);
    if (!rc) {
        *ids = tk.ids;
        *n = tk.n;
        tk.ids = NULL;
    }
    pl_chat_tokens_free(&tk);
    pl_chat_text_free(&r);
    return rc;
}
