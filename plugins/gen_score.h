/* gen_score.h: the scorers of generative eval tasks (docs/eval.md,
 * "Generative tasks"): exact match, contains, PCRE2 regex, numeric
 * tolerance, and the parser of an LLM judge's reply. Plain C over byte
 * strings (the model's output is valid UTF-8), so tests/test_gen_score.c
 * checks every edge case without a model; the Lua task runner (prelude.lua
 * H.task_run) calls them through pl_bind_gen_score.
 *
 * Numbers in text (pl_number_next), one grammar for the numeric scorer, its
 * target and the judge parser:
 *   [sign] digits [(,ddd)...] [.digits]   or   [sign] .digits
 *   - sign: '-', '+' or U+2212 right before the number, and only when the
 *     character before the sign is not a letter or digit ("3-2" is 3 and 2,
 *     "= -2" is -2, "GPT-4" is 4);
 *   - thousands separators: ',' then exactly 3 digits, only after a first
 *     group of 1 to 3 digits ("1,234,567" is 1234567; "1,23" is 1 and 23;
 *     "12,3456" is 12 and 3456); no spaces, '_' or '.' as separators;
 *   - a '.' belongs to the number only when a digit follows ("5." is 5);
 *   - no exponents ("1e5" is 1 and 5), no fractions ("3/4" is 3 and 4). */
#ifndef PL_GEN_SCORE_H
#define PL_GEN_SCORE_H

#include <stddef.h>
#include <stdint.h>
#include <lua.h>
#include "../core/error.h"

/* Normalization of exact/contains: strip = drop leading and trailing ASCII
 * whitespace; lowercase = Unicode simple lowercase (utf8proc) of both
 * sides. */
typedef struct pl_norm {
    int strip, lowercase;
} pl_norm;

/* 1 when output equals target after normalization, else 0. -1 out of memory. */
int pl_score_exact(const char *out, size_t n, const char *target, size_t tn, const pl_norm *nm);
/* 1 when the normalized target occurs in the normalized output (an empty
 * target is in everything). -1 out of memory. */
int pl_score_contains(const char *out, size_t n, const char *target, size_t tn, const pl_norm *nm);
/* *match = 1 when pattern (PCRE2; flags any of "imsxu" as pl.regex) matches
 * anywhere in output. Errors (bad pattern or flag, match limit) fill err. */
int pl_score_regex(const char *pattern, const char *flags, const char *out, size_t n, int *match, pl_err *err);
/* PCRE2 compile options of a flag string ("i", "m", "s", "x", "u"), as
 * pl.regex takes them (bind_text.c) and the regex scorer: 0, or the first
 * unknown flag character. */
int pl_regex_flags(const char *flags, uint32_t *opts);

typedef struct pl_num_span {
    size_t start, end;  /* bytes [start, end) of the number, sign included */
    double value;
} pl_num_span;
/* The next number at or after *pos (grammar above): 1 with *sp filled and
 * *pos moved past it, 0 when there is none. */
int pl_number_next(const char *s, size_t n, size_t *pos, pl_num_span *sp);
/* The last number of s: 1 and *v, or 0 when s has none. */
int pl_number_last(const char *s, size_t n, double *v);
/* s (leading/trailing whitespace ignored) is exactly one number: 1 and *v. */
int pl_number_parse(const char *s, size_t n, double *v);
/* Numeric scorer: 1 when the last number x of output satisfies
 * |x - target| <= abs_tol + rel_tol * |target|; 0 otherwise, and 0 when the
 * output holds no number. */
int pl_score_numeric(const char *out, size_t n, double target, double abs_tol, double rel_tol);

/* The LLM judge's reply -> a score on [lo, hi] (docs/eval.md):
 *  1. empty or only whitespace: PL_JUDGE_EMPTY;
 *  2. labelled scores ("score", "rating" or "grade", any case, then
 *     optional spaces, '*', ':', '=', "is", "of", then a number; or
 *     "[[N]]"): the last one is the answer;
 *  3. otherwise every number of the reply, except the denominators of
 *     "N/D" and "N out of D": one distinct value is the answer, none is
 *     PL_JUDGE_NO_NUMBER, several are PL_JUDGE_AMBIGUOUS;
 *  4. an answer written as "N/D" or "N out of D" with D other than hi is
 *     PL_JUDGE_SCALE; outside [lo, hi] PL_JUDGE_RANGE.
 * PL_JUDGE_OK sets *score to the number (not rescaled). */
enum pl_judge_status {
    PL_JUDGE_OK = 0,
    PL_JUDGE_EMPTY,
    PL_JUDGE_NO_NUMBER,
    PL_JUDGE_AMBIGUOUS,
    PL_JUDGE_RANGE,
    PL_JUDGE_SCALE,
};
int pl_judge_parse(const char *reply, size_t n, double lo, double hi, double *score);
/* "ok", "empty reply", "no number", "several different numbers",
 * "out of range", "another scale". */
const char *pl_judge_status_str(int status);

/* Set score_exact, score_contains, score_regex, score_numeric, number_last,
 * number_parse and judge_parse as fields of the table at idx (the host's C
 * primitives: prelude.lua's task runner calls them). */
void pl_bind_gen_score(lua_State *L, int idx);

#endif
