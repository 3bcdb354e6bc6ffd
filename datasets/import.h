/* import.h: training examples from the JSONL (and JSON array) formats people share.
 *
 * Formats (one JSON object per line, or one JSON array of such objects):
 *   openai    {"messages": [{"role": "system"|"developer"|"user"|"assistant", "content": "..."}]}
 *             (content may also be a list of {"type": "text", "text": "..."} parts)
 *   sharegpt  {"conversations": [{"from": "human"|"user"|"gpt"|"assistant"|"system", "value": "..."}],
 *              optional "system": "..."}
 *   alpaca    {"instruction": "...", "input": "..." (optional), "output": "...", optional "system"}
 *             -> user = instruction, plus "\n\n" + input when input is not empty
 *   text      {"text": "..."}                     plain completion, every token trained
 *   io        {"input": "...", "output": "..."}   (or "prompt"/"completion"): pre-segmented,
 *             only the output is trained
 * Auto-detection looks at the keys of the first valid record (messages >
 * conversations > instruction+output > text > input/prompt+output/completion)
 * and reads the whole file in that format; an explicit format overrides it.
 *
 * Nothing is dropped silently: every record that cannot be used (invalid
 * JSON, invalid UTF-8, a NUL byte, a line over the size limit, missing or
 * mistyped fields, unknown roles, wrong role order) becomes an error
 * "file:line: reason" and is counted; blank lines are counted separately.
 * In strict mode the first such record fails the whole import. Chat records
 * must be: an optional system message, then user/assistant alternating,
 * starting with user and ending with assistant. */
#ifndef PL_IMPORT_H
#define PL_IMPORT_H

#include <stddef.h>
#include "../core/error.h"
#include "chat.h"

typedef enum pl_import_fmt {
    PL_FMT_AUTO = 0,
    PL_FMT_OPENAI,
    PL_FMT_SHAREGPT,
    PL_FMT_ALPACA,
    PL_FMT_TEXT,
    PL_FMT_IO,
} pl_import_fmt;

/* "auto", "openai" (also "messages"), "sharegpt", "alpaca", "text"
 * (also "completion"), "io" (also "input-output"). */
int pl_import_fmt_parse(const char *s, pl_import_fmt *out, pl_err *err);
const char *pl_import_fmt_name(pl_import_fmt f);

typedef struct pl_example {
    pl_import_fmt fmt;
    pl_chat chat;  /* openai, sharegpt, alpaca */
    char *text;    /* text */
    char *input;   /* io */
    char *output;  /* io */
    int line;      /* 1-based line where the record starts */
} pl_example;

typedef struct pl_import_opts {
    pl_import_fmt fmt;  /* PL_FMT_AUTO = detect */
    int strict;         /* the first bad record fails the import */
    size_t max_line;    /* bytes per record; 0 = 64 MiB */
    size_t keep_errors; /* messages kept (all are counted); 0 = 1000 */
    int one_record;     /* the buffer is one JSONL record: a '[' starts an array value
                         * (an error), never a JSON array file of records */
    int first_line;     /* line number of the buffer's first line in its file (0: 1),
                         * for callers that import a file a record at a time */
} pl_import_opts;

typedef struct pl_import {
    pl_example *ex;
    size_t n, cap;
    char **errors;      /* "file:line: reason", the first keep_errors of them */
    size_t n_errors;    /* messages kept in errors[] */
    size_t n_records;   /* non-blank records seen (good + bad) */
    size_t n_bad;       /* records skipped (every one reported or counted) */
    size_t n_blank;     /* blank lines */
    pl_import_fmt fmt;  /* the format used (detected or forced); AUTO if nothing was read */
} pl_import;

/* Import a file. Returns PL_OK when the file was read (bad records are in
 * out->errors); an I/O error, or any bad record in strict mode, fails with
 * that record's "file:line: reason". out must be freed with
 * pl_import_free in every case. */
int pl_import_file(const char *path, const pl_import_opts *o, pl_import *out, pl_err *err);
/* The same from memory; name is used in the messages. */
int pl_import_buffer(const char *name, const char *buf, size_t len, const pl_import_opts *o, pl_import *out,
                     pl_err *err);
void pl_import_free(pl_import *im);

/* Render an example with a chat template (chat formats) or as text/io.
 * tmpl may be NULL for text and io examples. */
int pl_example_render(const pl_example *e, const char *tmpl, const pl_chat_opts *o, pl_chat_text *out, pl_err *err);

#endif
