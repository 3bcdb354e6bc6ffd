/* test_import.c: JSONL/JSON-array importers for every format, auto-detection, override, malformed files, strict mode. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "core/error.h"
#include "datasets/import.h"

static char dir[256];

static const char *write_file(const char *name, const char *data, size_t len) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    fwrite(data, 1, len, f);
    fclose(f);
    return path;
}

static int has_error(const pl_import *im, const char *needle) {
    for (size_t i = 0; i < im->n_errors; i++)
        if (strstr(im->errors[i], needle)) return 1;
    return 0;
}

static void test_formats(void) {
    pl_err err = {0};
    pl_import im;
    const char *openai =
        "{\"messages\": [{\"role\": \"system\", \"content\": \"S\"}, {\"role\": \"user\", \"content\": \"U\"}, "
        "{\"role\": \"assistant\", \"content\": \"A\"}]}\n"
        "{\"messages\": [{\"role\": \"developer\", \"content\": \"D\"}, {\"role\": \"user\", \"content\": "
        "[{\"type\": \"text\", \"text\": \"p1 \"}, {\"type\": \"text\", \"text\": \"p2\"}]}, {\"role\": \"assistant\", "
        "\"content\": \"ok\"}]}\n";
    const char *p = write_file("openai.jsonl", openai, strlen(openai));
    int rc = pl_import_file(p, NULL, &im, &err);
    CHECK(rc == 0 && im.n == 2 && im.fmt == PL_FMT_OPENAI && im.n_bad == 0, "openai: 2 records (rc %d, n %zu, %s)", rc, im.n,
          err.msg);
    if (im.n == 2) {
        CHECK(im.ex[0].chat.n == 3 && !strcmp(im.ex[0].chat.msg[2].role, "assistant") && !strcmp(im.ex[0].chat.msg[2].content, "A"),
              "openai: messages kept");
        CHECK(!strcmp(im.ex[1].chat.msg[0].role, "system") && !strcmp(im.ex[1].chat.msg[1].content, "p1 p2"),
              "openai: developer -> system, text parts joined");
        CHECK(im.ex[0].line == 1 && im.ex[1].line == 2, "line numbers kept");
    }
    pl_import_free(&im);

    const char *sharegpt =
        "{\"system\": \"Be nice.\", \"conversations\": [{\"from\": \"human\", \"value\": \"hi\"}, {\"from\": \"gpt\", "
        "\"value\": \"hello\"}, {\"from\": \"user\", \"value\": \"q\"}, {\"from\": \"assistant\", \"value\": \"a\"}]}\n"
        "{\"conversations\": [{\"from\": \"system\", \"value\": \"sys\"}, {\"from\": \"human\", \"value\": \"x\"}, "
        "{\"from\": \"gpt\", \"value\": \"y\"}]}\n";
    p = write_file("sharegpt.jsonl", sharegpt, strlen(sharegpt));
    rc = pl_import_file(p, NULL, &im, &err);
    CHECK(rc == 0 && im.n == 2 && im.fmt == PL_FMT_SHAREGPT, "sharegpt: 2 records");
    if (im.n == 2) {
        CHECK(im.ex[0].chat.n == 5 && !strcmp(im.ex[0].chat.msg[0].role, "system") &&
                  !strcmp(im.ex[0].chat.msg[0].content, "Be nice.") && !strcmp(im.ex[0].chat.msg[2].role, "assistant") &&
                  !strcmp(im.ex[0].chat.msg[3].role, "user"),
              "sharegpt: top-level system, human/gpt/user/assistant mapped");
        CHECK(im.ex[1].chat.n == 3 && !strcmp(im.ex[1].chat.msg[0].content, "sys"), "sharegpt: system turn");
    }
    pl_import_free(&im);

    const char *alpaca = "{\"instruction\": \"Add\", \"input\": \"1 2\", \"output\": \"3\"}\n"
                         "{\"instruction\": \"Say hi\", \"input\": \"\", \"output\": \"hi\"}\n"
                         "{\"instruction\": \"Greet\", \"output\": \"hey\", \"system\": \"S\"}\n";
    p = write_file("alpaca.jsonl", alpaca, strlen(alpaca));
    rc = pl_import_file(p, NULL, &im, &err);
    CHECK(rc == 0 && im.n == 3 && im.fmt == PL_FMT_ALPACA, "alpaca: 3 records");
    if (im.n == 3) {
        CHECK(!strcmp(im.ex[0].chat.msg[0].content, "Add\n\n1 2") && !strcmp(im.ex[0].chat.msg[1].content, "3"),
              "alpaca: instruction + input");
        CHECK(!strcmp(im.ex[1].chat.msg[0].content, "Say hi"), "alpaca: empty input adds nothing");
        CHECK(im.ex[2].chat.n == 3 && !strcmp(im.ex[2].chat.msg[0].role, "system"), "alpaca: optional system");
    }
    pl_import_free(&im);

    const char *text = "{\"text\": \"Once upon a time\"}\n\n   \n{\"text\": \"The end.\"}";
    p = write_file("text.jsonl", text, strlen(text));
    rc = pl_import_file(p, NULL, &im, &err);
    CHECK(rc == 0 && im.n == 2 && im.fmt == PL_FMT_TEXT && im.n_blank == 2 && im.n_bad == 0,
          "text: 2 records, 2 blank lines counted, last line without newline");
    if (im.n == 2) CHECK(!strcmp(im.ex[1].text, "The end.") && im.ex[1].line == 4, "text: content and line");
    pl_import_free(&im);

    const char *io = "{\"input\": \"Q: 2+2\\nA:\", \"output\": \" 4\"}\n{\"prompt\": \"Hi\", \"completion\": \" there\"}\n";
    p = write_file("io.jsonl", io, strlen(io));
    rc = pl_import_file(p, NULL, &im, &err);
    CHECK(rc == 0 && im.n == 2 && im.fmt == PL_FMT_IO, "io: input/output and prompt/completion");
    if (im.n == 2) CHECK(!strcmp(im.ex[0].input, "Q: 2+2\nA:") && !strcmp(im.ex[1].output, " there"), "io: fields");
    pl_import_free(&im);

    /* a JSON array file, elements over several lines */
    const char *arr = "\xEF\xBB\xBF[\n  {\"text\": \"one\"},\n  {\"text\":\n    \"two\"},\n  {\"nope\": 1}\n]\n";
    p = write_file("array.json", arr, strlen(arr));
    rc = pl_import_file(p, NULL, &im, &err);
    CHECK(rc == 0 && im.n == 2 && im.n_bad == 1 && im.n_records == 3, "array: 2 good, 1 bad (n %zu bad %zu)", im.n, im.n_bad);
    if (im.n == 2) CHECK(im.ex[0].line == 2 && im.ex[1].line == 3, "array: element lines");
    CHECK(has_error(&im, "array.json:5: missing field 'text'"), "array: bad element reported with its line");
    pl_import_free(&im);
    const char *arr2 = "[{\"text\": \"a\"}, {\"text\": \"b\"";
    p = write_file("array_open.json", arr2, strlen(arr2));
    rc = pl_import_file(p, NULL, &im, &err);
    CHECK(rc == 0 && im.n == 1 && im.n_bad >= 1 && has_error(&im, "array_open.json:1:"), "unterminated array reported");
    pl_import_free(&im);
}

static void test_detect_override(void) {
    pl_err err = {0};
    pl_import im;
    /* alpaca records also have "input"/"output": auto picks alpaca (instruction wins) */
    const char *alp = "{\"instruction\": \"I\", \"input\": \"x\", \"output\": \"O\"}\n";
    CHECK(pl_import_buffer("b", alp, strlen(alp), NULL, &im, &err) == 0 && im.fmt == PL_FMT_ALPACA, "auto: alpaca over io");
    pl_import_free(&im);
    pl_import_opts o = {0};
    o.fmt = PL_FMT_IO;
    CHECK(pl_import_buffer("b", alp, strlen(alp), &o, &im, &err) == 0 && im.fmt == PL_FMT_IO && im.n == 1 &&
              !strcmp(im.ex[0].input, "x"),
          "override: the same record read as io");
    pl_import_free(&im);
    /* override to a format the records are not in: every record is an error naming the field */
    o.fmt = PL_FMT_OPENAI;
    const char *txt = "{\"text\": \"a\"}\n{\"text\": \"b\"}\n";
    CHECK(pl_import_buffer("t.jsonl", txt, strlen(txt), &o, &im, &err) == 0 && im.n == 0 && im.n_bad == 2 &&
              has_error(&im, "t.jsonl:2: missing field 'messages' (openai format; record has keys 'text')"),
          "override mismatch reported per line");
    pl_import_free(&im);
    /* mixed file: the first record fixes the format */
    const char *mixed = "{\"text\": \"a\"}\n{\"messages\": []}\n";
    CHECK(pl_import_buffer("m.jsonl", mixed, strlen(mixed), NULL, &im, &err) == 0 && im.n == 1 && im.n_bad == 1 &&
              has_error(&im, "m.jsonl:2: missing field 'text'"),
          "mixed formats: the odd record is reported");
    pl_import_free(&im);
    /* undetectable first record, then a good one */
    const char *und = "{\"foo\": 1}\n{\"text\": \"ok\"}\n";
    CHECK(pl_import_buffer("u.jsonl", und, strlen(und), NULL, &im, &err) == 0 && im.n == 1 && im.fmt == PL_FMT_TEXT &&
              has_error(&im, "u.jsonl:1: cannot tell the format: record has keys 'foo'"),
          "undetectable record reported");
    pl_import_free(&im);
    pl_import_fmt f;
    CHECK(pl_import_fmt_parse("sharegpt", &f, &err) == 0 && f == PL_FMT_SHAREGPT, "fmt parse");
    CHECK(pl_import_fmt_parse("csv", &f, &err) == PL_EINVAL && strstr(err.msg, "csv"), "bad fmt rejected");
}

static void test_malformed(void) {
    pl_err err = {0};
    pl_import im;
    char buf[4096];
    size_t k = 0;
#define ADD(s) do { memcpy(buf + k, s, sizeof(s) - 1); k += sizeof(s) - 1; } while (0)
    ADD("{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"yo\"}]}\n"); /* 1 ok */
    ADD("{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}\n");                                                    /* 2 bad JSON */
    ADD("{\"messages\": [{\"role\": \"user\", \"content\": \"caf\xe9\"}]}\n");                                             /* 3 bad UTF-8 */
    ADD("{\"messages\": [{\"role\": \"user\"}, {\"role\": \"assistant\", \"content\": \"x\"}]}\n");                        /* 4 no content */
    ADD("{\"messages\": [{\"role\": \"assistant\", \"content\": \"a\"}, {\"role\": \"user\", \"content\": \"u\"}]}\n");    /* 5 order */
    ADD("\n");                                                                                                             /* 6 blank */
    ADD("{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"user\", \"content\": \"b\"}]}\n");         /* 7 order */
    ADD("{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}]}\n");                                                   /* 8 ends with user */
    ADD("{\"messages\": [{\"role\": \"tool\", \"content\": \"q\"}]}\n");                                                   /* 9 role */
    ADD("[1, 2]\n");                                                                                                       /* 10 not object */
    ADD("{\"messages\": [{\"role\": \"user\", \"content\": \"a\\u0000b\"}, {\"role\": \"assistant\", \"content\": \"c\"}]}\n"); /* 11 NUL */
    ADD("{\"messages\": [{\"role\": \"user\", \"content\": 5}, {\"role\": \"assistant\", \"content\": \"c\"}]}\n");        /* 12 type */
    ADD("{\"messages\": [{\"role\": \"user\", \"content\": \"u\"}, {\"role\": \"assistant\", \"content\": \"a\"}, {\"role\": \"system\", \"content\": \"s\"}]} trailing\n"); /* 13 trailing */
    ADD("{\"messages\": [{\"role\": \"user\", \"content\": \"\\ud800\"}, {\"role\": \"assistant\", \"content\": \"c\"}]}\n"); /* 14 lone surrogate */
    ADD("{\"messages\": [{\"role\": \"user\", \"content\": \"u\"}, {\"role\": \"assistant\", \"content\": \"a\"}, {\"role\": \"system\", \"content\": \"s\"}, {\"role\": \"user\", \"content\": \"u\"}, {\"role\": \"assistant\", \"content\": \"a\"}]}\n"); /* 15 late system */
    buf[k++] = '{'; buf[k++] = 0; buf[k++] = '}'; buf[k++] = '\n';                                                         /* 16 NUL byte */
#undef ADD
    const char *p = write_file("bad.jsonl", buf, k);
    pl_import_opts o = {0};
    o.fmt = PL_FMT_OPENAI;
    int rc = pl_import_file(p, &o, &im, &err);
    CHECK(rc == 0, "non-strict import reads the whole file: %s", err.msg);
    CHECK(im.n == 1 && im.n_bad == 14 && im.n_blank == 1 && im.n_records == 15,
          "totals: 1 good, 14 bad, 1 blank (got %zu good, %zu bad, %zu blank, %zu records)", im.n, im.n_bad, im.n_blank,
          im.n_records);
    CHECK(im.n_errors == 14, "every bad record has a message (%zu)", im.n_errors);
    static const char *want[] = {
        "bad.jsonl:2: invalid JSON",
        "bad.jsonl:3: invalid UTF-8 at column",
        "bad.jsonl:4: message 0: 'content' must be a string",
        "bad.jsonl:5: wrong role order: message 0 is assistant, expected user",
        "bad.jsonl:7: wrong role order: message 1 is user, expected assistant",
        "bad.jsonl:8: conversation ends with a user message",
        "bad.jsonl:9: message 0: role 'tool' is not supported",
        "bad.jsonl:10: expected a JSON object, found an array",
        "bad.jsonl:11: contains an escaped NUL",
        "bad.jsonl:12: message 0: 'content' must be a string or a list of text parts, found a number",
        "bad.jsonl:13: invalid JSON: unexpected text after the value",
        "bad.jsonl:14: invalid JSON",
        "bad.jsonl:15: wrong role order: message 2 is a system message",
        "bad.jsonl:16: contains a NUL byte",
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        CHECK(has_error(&im, want[i]), "reported: %s", want[i]);
    }
    pl_import_free(&im);
    /* strict: the first bad record is fatal, with its file:line */
    o.strict = 1;
    rc = pl_import_file(p, &o, &im, &err);
    CHECK(rc == PL_EFORMAT && strstr(err.msg, "bad.jsonl:2: invalid JSON") && strstr(err.msg, "strict"), "strict: %s", err.msg);
    pl_import_free(&im);
    /* error list is capped but every bad record is counted */
    o.strict = 0;
    o.keep_errors = 3;
    rc = pl_import_file(p, &o, &im, &err);
    CHECK(rc == 0 && im.n_errors == 3 && im.n_bad == 14, "kept 3 messages, counted 14");
    pl_import_free(&im);

    /* a huge line: 3 MB of text is fine; over the configured limit it is reported */
    size_t big = 3u << 20;
    char *h = malloc(big + 64);
    size_t hk = (size_t)sprintf(h, "{\"text\": \"");
    memset(h + hk, 'a', big);
    hk += big;
    hk += (size_t)sprintf(h + hk, "\"}\n{\"text\": \"small\"}\n");
    p = write_file("huge.jsonl", h, hk);
    pl_import_opts ho = {0};
    rc = pl_import_file(p, &ho, &im, &err);
    CHECK(rc == 0 && im.n == 2 && strlen(im.ex[0].text) == big, "huge line read whole");
    pl_import_free(&im);
    ho.max_line = 1u << 20;
    rc = pl_import_file(p, &ho, &im, &err);
    CHECK(rc == 0 && im.n == 1 && im.n_bad == 1 && has_error(&im, "huge.jsonl:1: record is 3145740 bytes, more than the 1048576-byte limit"),
          "line over the limit reported");
    pl_import_free(&im);
    free(h);

    /* missing file, empty file */
    rc = pl_import_file("/nonexistent/x.jsonl", NULL, &im, &err);
    CHECK(rc == PL_EIO && strstr(err.msg, "/nonexistent/x.jsonl"), "missing file: %s", err.msg);
    pl_import_free(&im);
    p = write_file("empty.jsonl", "", 0);
    rc = pl_import_file(p, NULL, &im, &err);
    CHECK(rc == 0 && im.n == 0 && im.n_records == 0, "empty file: nothing, no error");
    pl_import_free(&im);

    /* sharegpt / alpaca specific errors */
    const char *sg = "{\"conversations\": [{\"from\": \"bot\", \"value\": \"x\"}]}\n{\"conversations\": [{\"from\": \"human\"}]}\n";
    rc = pl_import_buffer("s.jsonl", sg, strlen(sg), NULL, &im, &err);
    CHECK(rc == 0 && im.n_bad == 2 && has_error(&im, "s.jsonl:1: turn 0: 'from' is 'bot'") &&
              has_error(&im, "s.jsonl:2: turn 0: missing field 'value'"),
          "sharegpt errors");
    pl_import_free(&im);
    const char *al = "{\"instruction\": \"x\", \"output\": 3}\n";
    o.fmt = PL_FMT_ALPACA;
    o.keep_errors = 0;
    rc = pl_import_buffer("a.jsonl", al, strlen(al), &o, &im, &err);
    CHECK(rc == 0 && has_error(&im, "a.jsonl:1: field 'output' must be a string, found a number"), "alpaca type error");
    pl_import_free(&im);
}

/* Importer + template end to end: each format renders with trained spans. */
static void test_render(void) {
    pl_err err = {0};
    pl_import im;
    const char *s = "{\"conversations\": [{\"from\": \"human\", \"value\": \"hi\"}, {\"from\": \"gpt\", \"value\": \"yo\"}]}\n";
    int rc = pl_import_buffer("r", s, strlen(s), NULL, &im, &err);
    CHECK(rc == 0 && im.n == 1, "render input");
    if (im.n == 1) {
        pl_chat_opts o = {0};
        o.eos_token = "<|im_end|>";
        pl_chat_text t;
        rc = pl_example_render(&im.ex[0], "chatml", &o, &t, &err);
        CHECK(rc == 0 && t.n_spans == 1 && !strncmp(t.text + t.spans[0].start, "yo<|im_end|>", t.spans[0].end - t.spans[0].start),
              "sharegpt example renders with the reply trained");
        if (!rc) pl_chat_text_free(&t);
    }
    pl_import_free(&im);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/potluck_test_import_XXXXXX");
    if (!mkdtemp(dir)) {
        fprintf(stderr, "mkdtemp failed\n");
        return 1;
    }
    test_formats();
    test_detect_override();
    test_malformed();
    test_render();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "note: could not remove %s\n", dir);
    return check_summary("test_import");
}
