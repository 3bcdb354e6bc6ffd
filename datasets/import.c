/* import.c: JSONL / JSON-array readers for OpenAI, ShareGPT, Alpaca, text and input/output records. */
#include "import.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

#include "../core/mapfile.h"

static const char *fmt_names[] = {"auto", "openai", "sharegpt", "alpaca", "text", "io"};

const char *pl_import_fmt_name(pl_import_fmt f) {
    return (unsigned)f < sizeof fmt_names / sizeof *fmt_names ? fmt_names[f] : "?";
}

int pl_import_fmt_parse(const char *s, pl_import_fmt *out, pl_err *err) {
    if (!strcmp(s, "auto")) *out = PL_FMT_AUTO;
    else if (!strcmp(s, "openai") || !strcmp(s, "messages")) *out = PL_FMT_OPENAI;
    else if (!strcmp(s, "sharegpt")) *out = PL_FMT_SHAREGPT;
    else if (!strcmp(s, "alpaca")) *out = PL_FMT_ALPACA;
    else if (!strcmp(s, "text") || !strcmp(s, "completion")) *out = PL_FMT_TEXT;
    else if (!strcmp(s, "io") || !strcmp(s, "input-output")) *out = PL_FMT_IO;
    else return pl_err_set(err, PL_EINVAL, "format '%s': expected auto, openai, sharegpt, alpaca, text or io", s);
    return PL_OK;
}

static void example_free(pl_example *e) {
    pl_chat_clear(&e->chat);
    free(e->text);
    free(e->input);
    free(e->output);
    memset(e, 0, sizeof *e);
}

void pl_import_free(pl_import *im) {
    for (size_t i = 0; i < im->n; i++) example_free(&im->ex[i]);
    free(im->ex);
    for (size_t i = 0; i < im->n_errors; i++) free(im->errors[i]);
    free(im->errors);
    memset(im, 0, sizeof *im);
}

/* Strict UTF-8: no overlong forms, no surrogates, nothing past U+10FFFF.
 * Returns the offset of the first bad byte or SIZE_MAX. */
static size_t utf8_bad(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) { i++; continue; }
        size_t len;
        unsigned min;
        if (c >= 0xC2 && c <= 0xDF) { len = 2; min = 0x80; }
        else if (c >= 0xE0 && c <= 0xEF) { len = 3; min = 0x800; }
        else if (c >= 0xF0 && c <= 0xF4) { len = 4; min = 0x10000; }
        else return i;
        if (i + len > n) return i;
        unsigned cp = c & (len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07);
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return i;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
        i += len;
    }
    return SIZE_MAX;
}

typedef struct rd {
    const char *name;
    const pl_import_opts *o;
    pl_import *im;
    pl_err *err;
    size_t max_line, keep;
} rd;

/* Record a bad record; in strict mode, fail with it. */
static int bad(rd *r, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(rd *r, int line, const char *fmt, ...) {
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    r->im->n_bad++;
    if (r->o->strict) return pl_err_set(r->err, PL_EFORMAT, "%s:%d: %s (strict mode)", r->name, line, msg);
    if (r->im->n_errors < r->keep) {
        char buf[1024];
        snprintf(buf, sizeof buf, "%s:%d: %s", r->name, line, msg);
        if (!r->im->errors) {
            r->im->errors = calloc(r->keep, sizeof(char *));
            if (!r->im->errors) return pl_err_set(r->err, PL_ENOMEM, "%s: out of memory", r->name);
        }
        char *d = strdup(buf);
        if (!d) return pl_err_set(r->err, PL_ENOMEM, "%s: out of memory", r->name);
        r->im->errors[r->im->n_errors++] = d;
    }
    return PL_OK;
}

static pl_import_fmt detect(const cJSON *o) {
    if (cJSON_GetObjectItemCaseSensitive(o, "messages")) return PL_FMT_OPENAI;
    if (cJSON_GetObjectItemCaseSensitive(o, "conversations")) return PL_FMT_SHAREGPT;
    if (cJSON_GetObjectItemCaseSensitive(o, "instruction") && cJSON_GetObjectItemCaseSensitive(o, "output"))
        return PL_FMT_ALPACA;
    if (cJSON_GetObjectItemCaseSensitive(o, "text")) return PL_FMT_TEXT;
    if ((cJSON_GetObjectItemCaseSensitive(o, "input") && cJSON_GetObjectItemCaseSensitive(o, "output")) ||
        (cJSON_GetObjectItemCaseSensitive(o, "prompt") && cJSON_GetObjectItemCaseSensitive(o, "completion")))
        return PL_FMT_IO;
    return PL_FMT_AUTO;
}

/* The keys of o, for messages: "keys a, b, c". */
static void keys_of(const cJSON *o, char *buf, size_t cap) {
    size_t k = 0;
    buf[0] = 0;
    int n = 0;
    for (const cJSON *e = o->child; e && k + 40 < cap; e = e->next, n++)
        k += (size_t)snprintf(buf + k, cap - k, "%s'%.30s'", n ? ", " : "", e->string ? e->string : "");
    if (!n) snprintf(buf, cap, "none");
}

/* A required string field; NULL (and *why set) when missing or not a string. */
static const char *str_field(const cJSON *o, const char *key, int required, char *why, size_t cap) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) {
        if (required) snprintf(why, cap, "missing field '%s'", key);
        return NULL;
    }
    if (!cJSON_IsString(v)) {
        snprintf(why, cap, "field '%s' must be a string, found %s", key,
                 cJSON_IsNumber(v) ? "a number" : cJSON_IsArray(v) ? "an array" : cJSON_IsObject(v) ? "an object"
                 : cJSON_IsBool(v) ? "a boolean" : "something else");
        return NULL;
    }
    return v->valuestring;
}

/* Role order: [system] user assistant (user assistant)*. */
static int check_order(const pl_chat *c, char *why, size_t cap) {
    int i = 0;
    if (c->n == 0) { snprintf(why, cap, "conversation has no messages"); return 0; }
    if (!strcmp(c->msg[0].role, "system")) i = 1;
    int want_user = 1;
    for (; i < c->n; i++) {
        const char *want = want_user ? "user" : "assistant";
        if (strcmp(c->msg[i].role, want)) {
            if (!strcmp(c->msg[i].role, "system"))
                snprintf(why, cap, "wrong role order: message %d is a system message; only the first message may be one", i);
            else
                snprintf(why, cap, "wrong role order: message %d is %s, expected %s (after an optional system message, "
                         "user and assistant alternate, starting with user)", i, c->msg[i].role, want);
            return 0;
        }
        want_user = !want_user;
    }
    if (!want_user) {
        snprintf(why, cap, "conversation ends with a user message (message %d): nothing to train on after it", c->n - 1);
        return 0;
    }
    return 1;
}

/* Content: a string, or a list of {"type": "text", "text": ...} parts. */
static char *content_of(const cJSON *v, char *why, size_t cap, int idx) {
    if (cJSON_IsString(v)) return strdup(v->valuestring);
    if (cJSON_IsArray(v)) {
        size_t total = 1;
        for (const cJSON *p = v->child; p; p = p->next) {
            const cJSON *ty = cJSON_GetObjectItemCaseSensitive(p, "type");
            const cJSON *tx = cJSON_GetObjectItemCaseSensitive(p, "text");
            if (!cJSON_IsObject(p) || !cJSON_IsString(ty) || strcmp(ty->valuestring, "text") || !cJSON_IsString(tx)) {
                snprintf(why, cap, "message %d: content part is not {\"type\": \"text\", \"text\": ...} (only text parts are supported)", idx);
                return NULL;
            }
            total += strlen(tx->valuestring);
        }
        char *s = malloc(total), *q = s;
        if (!s) { snprintf(why, cap, "out of memory"); return NULL; }
        for (const cJSON *p = v->child; p; p = p->next) {
            const char *t = cJSON_GetObjectItemCaseSensitive(p, "text")->valuestring;
            size_t l = strlen(t);
            memcpy(q, t, l);
            q += l;
        }
        *q = 0;
        return s;
    }
    snprintf(why, cap, "message %d: 'content' must be a string or a list of text parts, found %s", idx,
             !v || cJSON_IsNull(v) ? "null/missing (tool calls are not supported)" : cJSON_IsNumber(v) ? "a number" : "an object");
    return NULL;
}

/* why = pre + why (truncated to cap). */
static void prefix_why(char *why, size_t cap, const char *what, int idx) {
    char pre[48];
    snprintf(pre, sizeof pre, "%s %d: ", what, idx);
    size_t pl = strlen(pre), wl = strlen(why);
    if (pl + wl + 1 > cap) wl = cap - pl - 1;
    memmove(why + pl, why, wl);
    memcpy(why, pre, pl);
    why[pl + wl] = 0;
}

static int add_msg(pl_chat *c, const char *role, char *content, char *why, size_t cap) {
    pl_err e = {0};
    int rc = pl_chat_add(c, role, content, &e);
    free(content);
    if (rc) snprintf(why, cap, "%.200s", e.msg);
    return rc == 0;
}

/* Convert one record; returns 1 on success, 0 with *why set. */
static int convert(const cJSON *o, pl_import_fmt f, pl_example *e, char *why, size_t cap) {
    char keys[200];
    e->fmt = f;
    switch (f) {
    case PL_FMT_OPENAI: {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, "messages");
        if (!m) { keys_of(o, keys, sizeof keys); snprintf(why, cap, "missing field 'messages' (openai format; record has keys %s)", keys); return 0; }
        if (!cJSON_IsArray(m)) { snprintf(why, cap, "field 'messages' must be an array"); return 0; }
        int i = 0;
        for (const cJSON *x = m->child; x; x = x->next, i++) {
            if (!cJSON_IsObject(x)) { snprintf(why, cap, "message %d is not an object", i); return 0; }
            const char *role = str_field(x, "role", 1, why, cap);
            if (!role) { prefix_why(why, cap, "message", i); return 0; }
            if (!strcmp(role, "developer")) role = "system";
            if (strcmp(role, "system") && strcmp(role, "user") && strcmp(role, "assistant")) {
                snprintf(why, cap, "message %d: role '%.40s' is not supported (system, developer, user, assistant)", i, role);
                return 0;
            }
            char *content = content_of(cJSON_GetObjectItemCaseSensitive(x, "content"), why, cap, i);
            if (!content || !add_msg(&e->chat, role, content, why, cap)) return 0;
        }
        return check_order(&e->chat, why, cap);
    }
    case PL_FMT_SHAREGPT: {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(o, "conversations");
        if (!m) { keys_of(o, keys, sizeof keys); snprintf(why, cap, "missing field 'conversations' (sharegpt format; record has keys %s)", keys); return 0; }
        if (!cJSON_IsArray(m)) { snprintf(why, cap, "field 'conversations' must be an array"); return 0; }
        const char *sys = str_field(o, "system", 0, why, cap);
        if (!sys && cJSON_GetObjectItemCaseSensitive(o, "system") && !cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(o, "system"))) return 0;
        int first_is_sys = m->child && cJSON_IsString(cJSON_GetObjectItemCaseSensitive(m->child, "from")) &&
                           !strcmp(cJSON_GetObjectItemCaseSensitive(m->child, "from")->valuestring, "system");
        if (sys && *sys && !first_is_sys) {
            char *s = strdup(sys);
            if (!s || !add_msg(&e->chat, "system", s, why, cap)) return 0;
        }
        int i = 0;
        for (const cJSON *x = m->child; x; x = x->next, i++) {
            if (!cJSON_IsObject(x)) { snprintf(why, cap, "turn %d is not an object", i); return 0; }
            const char *from = str_field(x, "from", 1, why, cap);
            if (!from) { prefix_why(why, cap, "turn", i); return 0; }
            const char *value = str_field(x, "value", 1, why, cap);
            if (!value) { prefix_why(why, cap, "turn", i); return 0; }
            const char *role;
            if (!strcmp(from, "human") || !strcmp(from, "user")) role = "user";
            else if (!strcmp(from, "gpt") || !strcmp(from, "assistant") || !strcmp(from, "chatgpt") || !strcmp(from, "model")) role = "assistant";
            else if (!strcmp(from, "system")) role = "system";
            else {
                snprintf(why, cap, "turn %d: 'from' is '%.40s' (expected human, user, gpt, assistant or system)", i, from);
                return 0;
            }
            char *v = strdup(value);
            if (!v || !add_msg(&e->chat, role, v, why, cap)) return 0;
        }
        return check_order(&e->chat, why, cap);
    }
    case PL_FMT_ALPACA: {
        const char *ins = str_field(o, "instruction", 1, why, cap);
        if (!ins) return 0;
        const char *out = str_field(o, "output", 1, why, cap);
        if (!out) return 0;
        why[0] = 0;
        const char *in = str_field(o, "input", 0, why, cap);
        if (!in && why[0]) return 0;
        const char *sys = str_field(o, "system", 0, why, cap);
        if (!sys && why[0]) return 0;
        if (sys && *sys) {
            char *s = strdup(sys);
            if (!s || !add_msg(&e->chat, "system", s, why, cap)) return 0;
        }
        size_t l = strlen(ins) + (in ? strlen(in) : 0) + 3;
        char *u = malloc(l);
        if (!u) { snprintf(why, cap, "out of memory"); return 0; }
        if (in && *in) snprintf(u, l, "%s\n\n%s", ins, in);
        else snprintf(u, l, "%s", ins);
        char *a = strdup(out);
        if (!a) { free(u); snprintf(why, cap, "out of memory"); return 0; }
        if (!add_msg(&e->chat, "user", u, why, cap)) { free(a); return 0; }
        return add_msg(&e->chat, "assistant", a, why, cap);
    }
    case PL_FMT_TEXT: {
        const char *t = str_field(o, "text", 1, why, cap);
        if (!t) {
            if (!cJSON_GetObjectItemCaseSensitive(o, "text")) {
                keys_of(o, keys, sizeof keys);
                snprintf(why, cap, "missing field 'text' (text format; record has keys %s)", keys);
            }
            return 0;
        }
        if (!*t) { snprintf(why, cap, "field 'text' is empty"); return 0; }
        e->text = strdup(t);
        if (!e->text) { snprintf(why, cap, "out of memory"); return 0; }
        return 1;
    }
    case PL_FMT_IO: {
        int pc = cJSON_GetObjectItemCaseSensitive(o, "input") == NULL && cJSON_GetObjectItemCaseSensitive(o, "prompt") != NULL;
        const char *in = str_field(o, pc ? "prompt" : "input", 1, why, cap);
        if (!in) return 0;
        const char *out = str_field(o, pc ? "completion" : "output", 1, why, cap);
        if (!out) return 0;
        if (!*out) { snprintf(why, cap, "field '%s' is empty: nothing to train on", pc ? "completion" : "output"); return 0; }
        e->input = strdup(in);
        e->output = strdup(out);
        if (!e->input || !e->output) { snprintf(why, cap, "out of memory"); return 0; }
        return 1;
    }
    default:
        keys_of(o, keys, sizeof keys);
        snprintf(why, cap, "cannot tell the format: record has keys %s (expected messages, conversations, "
                 "instruction+output, text, or input+output)", keys);
        return 0;
    }
}

/* One record's bytes (a JSONL line or an array element) starting at line. */
static int record(rd *r, const char *p, size_t n, int line) {
    /* blank? */
    size_t k = 0;
    while (k < n && (p[k] == ' ' || p[k] == '\t' || p[k] == '\r' || p[k] == '\n')) k++;
    if (k == n) {
        r->im->n_blank++;
        return PL_OK;
    }
    r->im->n_records++;
    if (n > r->max_line) return bad(r, line, "record is %zu bytes, more than the %zu-byte limit", n, r->max_line);
    const char *z = memchr(p, 0, n);
    if (z) return bad(r, line, "contains a NUL byte at column %zu", (size_t)(z - p) + 1);
    size_t u = utf8_bad((const unsigned char *)p, n);
    if (u != SIZE_MAX) return bad(r, line, "invalid UTF-8 at column %zu (byte 0x%02x)", u + 1, (unsigned char)p[u]);
    if (memmem(p, n, "\\u0000", 6)) return bad(r, line, "contains an escaped NUL (\\u0000), which is not supported");
    const char *end = NULL;
    cJSON *o = cJSON_ParseWithLengthOpts(p, n, &end, 0);
    if (!o) {
        size_t col = end && end >= p && end <= p + n ? (size_t)(end - p) + 1 : 0;
        const char *ep = cJSON_GetErrorPtr();
        if (ep && ep >= p && ep <= p + n) col = (size_t)(ep - p) + 1;
        return bad(r, line, "invalid JSON near column %zu", col);
    }
    /* only whitespace may follow */
    if (end) {
        size_t off = (size_t)(end - p);
        while (off < n && (p[off] == ' ' || p[off] == '\t' || p[off] == '\r' || p[off] == '\n')) off++;
        if (off < n) {
            cJSON_Delete(o);
            return bad(r, line, "invalid JSON: unexpected text after the value at column %zu", off + 1);
        }
    }
    if (!cJSON_IsObject(o)) { /* name the kind before the value is freed */
        const char *kind = cJSON_IsArray(o) ? "an array" : cJSON_IsString(o) ? "a string" : "a scalar";
        cJSON_Delete(o);
        return bad(r, line, "expected a JSON object, found %s", kind);
    }
    pl_import_fmt f = r->im->fmt;
    if (f == PL_FMT_AUTO) {
        f = detect(o);
        if (f != PL_FMT_AUTO) r->im->fmt = f;
    }
    if (r->im->n == r->im->cap) {
        size_t nc = r->im->cap ? r->im->cap * 2 : 64;
        pl_example *ne = realloc(r->im->ex, nc * sizeof *ne);
        if (!ne) {
            cJSON_Delete(o);
            return pl_err_set(r->err, PL_ENOMEM, "%s: out of memory", r->name);
        }
        r->im->ex = ne;
        r->im->cap = nc;
    }
    pl_example *e = &r->im->ex[r->im->n];
    memset(e, 0, sizeof *e);
    char why[600] = {0};
    int ok = convert(o, f, e, why, sizeof why);
    cJSON_Delete(o);
    if (!ok) {
        example_free(e);
        return bad(r, line, "%s", why);
    }
    e->line = line;
    r->im->n++;
    return PL_OK;
}

/* A JSON array file: elements are split by a scanner that tracks strings and
 * nesting, so each one is parsed (and reported) on its own. */
static int read_array(rd *r, const char *buf, size_t len, size_t start, int line) {
    size_t i = start + 1;
    int ln = line;
    for (;;) {
        while (i < len && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\r' || buf[i] == '\n')) {
            if (buf[i] == '\n') ln++;
            i++;
        }
        if (i >= len) return bad(r, ln, "JSON array is not closed with ']'");
        if (buf[i] == ']') {
            i++;
            break;
        }
        size_t s = i;
        int eline = ln, depth = 0, instr = 0;
        while (i < len) {
            char ch = buf[i];
            if (ch == '\n') ln++;
            if (instr) {
                if (ch == '\\') i++;
                else if (ch == '"') instr = 0;
            } else if (ch == '"') instr = 1;
            else if (ch == '{' || ch == '[') depth++;
            else if (ch == '}' || ch == ']') {
                if (depth == 0) break;
                depth--;
            } else if (ch == ',' && depth == 0) break;
            i++;
        }
        if (i >= len) {
            int rc = record(r, buf + s, len - s, eline);
            if (rc) return rc;
            return bad(r, ln, "JSON array is not closed with ']'");
        }
        int rc = record(r, buf + s, i - s, eline);
        if (rc) return rc;
        if (buf[i] == ',') i++;
        else if (buf[i] == '}') return bad(r, ln, "unexpected '}' in JSON array; rest of the file skipped");
    }
    while (i < len && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\r' || buf[i] == '\n')) {
        if (buf[i] == '\n') ln++;
        i++;
    }
    if (i < len) return bad(r, ln, "unexpected text after the closing ']' of the JSON array; ignored");
    return PL_OK;
}

int pl_import_buffer(const char *name, const char *buf, size_t len, const pl_import_opts *o, pl_import *out,
                     pl_err *err) {
    memset(out, 0, sizeof *out);
    pl_import_opts dflt = {0};
    if (!o) o = &dflt;
    rd r = {name, o, out, err, o->max_line ? o->max_line : ((size_t)64 << 20), o->keep_errors ? o->keep_errors : 1000};
    out->fmt = o->fmt;
    size_t i = 0;
    if (len >= 3 && !memcmp(buf, "\xEF\xBB\xBF", 3)) i = 3; /* UTF-8 byte order mark */
    size_t k = i;
    const int line0 = o->first_line > 0 ? o->first_line : 1;
    int line = line0;
    while (k < len && (buf[k] == ' ' || buf[k] == '\t' || buf[k] == '\r' || buf[k] == '\n')) {
        if (buf[k] == '\n') line++;
        k++;
    }
    if (k < len && buf[k] == '[' && !o->one_record) return read_array(&r, buf, len, k, line);
    line = line0;
    while (i < len) {
        const char *nl = memchr(buf + i, '\n', len - i);
        size_t e = nl ? (size_t)(nl - buf) : len;
        int rc = record(&r, buf + i, e - i, line);
        if (rc) return rc;
        line++;
        i = e + 1;
    }
    return PL_OK;
}

int pl_import_file(const char *path, const pl_import_opts *o, pl_import *out, pl_err *err) {
    memset(out, 0, sizeof *out);
    pl_map m;
    int rc = pl_map_open(&m, path, err);
    if (rc) return rc;
    rc = pl_import_buffer(path, (const char *)m.data, m.size, o, out, err);
    pl_map_close(&m);
    return rc;
}

int pl_example_render(const pl_example *e, const char *tmpl, const pl_chat_opts *o, pl_chat_text *out, pl_err *err) {
    switch (e->fmt) {
    case PL_FMT_TEXT: return pl_chat_render_text(e->text, out, err);
    case PL_FMT_IO: return pl_chat_render_io(e->input, e->output, o->eos_token, out, err);
    default: return pl_chat_render(tmpl, &e->chat, o, out, err);
    }
}
