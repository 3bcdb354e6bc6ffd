/* test_gen_score.c: the scorers of generative eval tasks (plugins/gen_score.h):
 * exact and contains with their normalization, regex (flags, bad patterns,
 * the match limit), numbers in text (signs, decimals, thousands separators,
 * what is not a number), the numeric tolerance, and the LLM judge's reply
 * parser on well-formed and malformed replies. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "../plugins/gen_score.h"
#include "check.h"

static int ex(const char *o, const char *t, int strip, int lower) {
    pl_norm nm = {strip, lower};
    return pl_score_exact(o, strlen(o), t, strlen(t), &nm);
}
static int co(const char *o, const char *t, int strip, int lower) {
    pl_norm nm = {strip, lower};
    return pl_score_contains(o, strlen(o), t, strlen(t), &nm);
}

static void test_exact_contains(void) {
    CHECK(ex("Paris", "Paris", 1, 0) == 1, "exact");
    CHECK(ex("  Paris\n", "Paris", 1, 0) == 1, "strip");
    CHECK(ex("  Paris\n", "Paris", 0, 0) == 0, "no strip");
    CHECK(ex("paris", "Paris", 1, 0) == 0, "case matters by default");
    CHECK(ex("PARIS", "paris", 1, 1) == 1, "lowercase");
    CHECK(ex("ÉCOLE", "école", 1, 1) == 1, "lowercase is Unicode");
    CHECK(ex("Paris.", "Paris", 1, 1) == 0, "punctuation is not normalized");
    CHECK(ex("", "", 1, 0) == 1 && ex(" \t", "", 1, 0) == 1, "empty");
    CHECK(ex("a b", "a  b", 1, 0) == 0, "inner whitespace kept");
    CHECK(co("The capital is Paris.", "Paris", 1, 0) == 1, "contains");
    CHECK(co("The capital is paris.", "Paris", 1, 0) == 0, "contains: case");
    CHECK(co("The capital is PARIS.", "paris", 1, 1) == 1, "contains: lowercase");
    CHECK(co("Par", "Paris", 1, 0) == 0, "contains: longer target");
    CHECK(co("anything", "", 1, 0) == 1, "contains: empty target");
    CHECK(co("x", "  x  ", 1, 0) == 1, "contains: target stripped");
}

static void test_regex(void) {
    pl_err err = {0};
    int m = -1;
    const char *o = "The answer is 42.";
    CHECK(pl_score_regex("\\b42\\b", "", o, strlen(o), &m, &err) == 0 && m == 1, "regex match: %s", err.msg);
    CHECK(pl_score_regex("^42$", "", o, strlen(o), &m, &err) == 0 && m == 0, "regex anchored: no match");
    CHECK(pl_score_regex("ANSWER", "i", o, strlen(o), &m, &err) == 0 && m == 1, "flag i");
    CHECK(pl_score_regex("^42$", "m", "x\n42\ny", 6, &m, &err) == 0 && m == 1, "flag m");
    CHECK(pl_score_regex("\\p{Lu}", "u", "é", 2, &m, &err) == 0 && m == 0, "flag u: é is not upper case");
    CHECK(pl_score_regex("(", "", o, strlen(o), &m, &err) != 0 && strstr(err.msg, "regex scorer: pattern \"(\""), "bad pattern: %s", err.msg);
    CHECK(pl_score_regex("a", "q", o, strlen(o), &m, &err) != 0 && strstr(err.msg, "unknown flag 'q'"), "bad flag: %s", err.msg);
    /* catastrophic backtracking stops at the match limit with an error */
    char subj[64];
    memset(subj, 'a', 40);
    subj[40] = 'b';
    subj[41] = 0;
    CHECK(pl_score_regex("^(a+)+$", "", subj, strlen(subj), &m, &err) != 0 && strstr(err.msg, "limit"), "match limit: %s", err.msg);
}

static int last(const char *s, double *v) { return pl_number_last(s, strlen(s), v); }
static int whole(const char *s, double *v) { return pl_number_parse(s, strlen(s), v); }

static void test_numbers(void) {
    double v = NAN;
    struct { const char *s; double want; } ok[] = {
        {"42", 42}, {"The answer is 42.", 42}, {"-7", -7}, {"x = -7", -7}, {"+3", 3},
        {"\xE2\x88\x92" "5", -5},                 /* U+2212 minus */
        {"3.14", 3.14}, {"about .5 of it", 0.5}, {"-0.25", -0.25}, {"ends with 5.", 5},
        {"1,234", 1234}, {"1,234,567.5", 1234567.5}, {"1,23", 23}, {"12,3456", 3456}, {"1234,567", 567},
        {"3-2", 2},                               /* a hyphen after a digit is no sign */
        {"GPT-4", 4}, {"2 + 3 = 5", 5}, {"5 apples and 3 pears", 3}, {"1e5", 5}, {"3/4", 4}, {"50%", 50},
        {"0007", 7}, {"x2", 2},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        v = NAN;
        CHECK(last(ok[i].s, &v) == 1 && fabs(v - ok[i].want) < 1e-12, "last number of \"%s\": %g, want %g", ok[i].s, v, ok[i].want);
    }
    CHECK(last("", &v) == 0 && last("no digits here.", &v) == 0 && last("-", &v) == 0 && last(".", &v) == 0, "no number");
    CHECK(whole(" 12 ", &v) == 1 && v == 12, "whole: spaces around");
    CHECK(whole("-1,000.5", &v) == 1 && v == -1000.5, "whole: sign, separator, decimals");
    CHECK(whole("12 apples", &v) == 0 && whole("", &v) == 0 && whole("1 2", &v) == 0, "whole: not one number");
    /* the scorer: last number, tolerance abs + rel * |target| */
    CHECK(pl_score_numeric("It is 12.", 9, 12, 0, 0) == 1, "numeric exact");
    CHECK(pl_score_numeric("12 or 13", 8, 12, 0, 0) == 0, "numeric: the last number counts");
    CHECK(pl_score_numeric("0.3", 3, 0.1 + 0.2, 1e-9, 0) == 1, "numeric: abs tolerance");
    CHECK(pl_score_numeric("0.3", 3, 0.1 + 0.2, 0, 0) == 0, "numeric: no tolerance");
    CHECK(pl_score_numeric("101", 3, 100, 0, 0.01) == 1 && pl_score_numeric("102", 3, 100, 0, 0.01) == 0, "numeric: rel tolerance");
    CHECK(pl_score_numeric("-4", 2, -4, 0, 0) == 1 && pl_score_numeric("4", 1, -4, 0, 0) == 0, "numeric: sign");
    CHECK(pl_score_numeric("no idea", 7, 0, 1, 1) == 0, "numeric: no number scores 0");
}

static void judge(const char *reply, double lo, double hi, int want, double want_score, int line) {
    double s = NAN;
    int st = pl_judge_parse(reply, strlen(reply), lo, hi, &s);
    CHECK(st == want, "line %d: \"%s\": %s, want %s", line, reply, pl_judge_status_str(st), pl_judge_status_str(want));
    if (st == want && want == PL_JUDGE_OK) CHECK(s == want_score, "line %d: \"%s\": score %g, want %g", line, reply, s, want_score);
}
#define J(r, w, s) judge(r, 1, 10, w, s, __LINE__)

static void test_judge(void) {
    J("Rating: 7", PL_JUDGE_OK, 7);
    J("7", PL_JUDGE_OK, 7);
    J("  8\n", PL_JUDGE_OK, 8);
    J("Score: 7/10", PL_JUDGE_OK, 7);
    J("7/10", PL_JUDGE_OK, 7);
    J("I would give it 8 out of 10.", PL_JUDGE_OK, 8);
    J("Rating: [[9]]", PL_JUDGE_OK, 9);
    J("[[6]]", PL_JUDGE_OK, 6);
    J("**Rating:** 5", PL_JUDGE_OK, 5);
    J("The score is 4.", PL_JUDGE_OK, 4);
    J("rating of 6.5", PL_JUDGE_OK, 6.5);
    J("The answer has 3 errors. Rating: 4", PL_JUDGE_OK, 4);     /* the label wins */
    J("Rating: 4. It has 3 errors.", PL_JUDGE_OK, 4);
    J("Rating: 3\nOn reflection, Rating: 5", PL_JUDGE_OK, 5);    /* the last label */
    J("7 7", PL_JUDGE_OK, 7);                                     /* one distinct value */
    /* malformed */
    J("", PL_JUDGE_EMPTY, 0);
    J(" \n\t ", PL_JUDGE_EMPTY, 0);
    J("The response is helpful and accurate.", PL_JUDGE_NO_NUMBER, 0);
    J("Rating:", PL_JUDGE_NO_NUMBER, 0);
    J("I'd say 7, maybe 8.", PL_JUDGE_AMBIGUOUS, 0);
    J("Between 6 and 9", PL_JUDGE_AMBIGUOUS, 0);
    J("Rating: 11", PL_JUDGE_RANGE, 0);
    J("Rating: 0", PL_JUDGE_RANGE, 0);
    J("Rating: -3", PL_JUDGE_RANGE, 0);
    J("100", PL_JUDGE_RANGE, 0);
    J("Score: 4/5", PL_JUDGE_SCALE, 0);
    J("3 out of 5", PL_JUDGE_SCALE, 0);
    J("Rating: 7/100", PL_JUDGE_SCALE, 0);
    /* another scale of the judge's own */
    judge("Score: 0.8", 0, 1, PL_JUDGE_OK, 0.8, __LINE__);
    judge("4/5", 1, 5, PL_JUDGE_OK, 4, __LINE__);
    /* every status has a name */
    for (int s = PL_JUDGE_OK; s <= PL_JUDGE_SCALE; s++) CHECK(strcmp(pl_judge_status_str(s), "?"), "status %d named", s);
    /* not NUL-terminated: the length bounds the parse */
    double sc = NAN;
    CHECK(pl_judge_parse("Rating: 7 and 9", 9, 1, 10, &sc) == PL_JUDGE_OK && sc == 7, "length-bounded reply");
}

int main(void) {
    test_exact_contains();
    test_regex();
    test_numbers();
    test_judge();
    return check_summary("test_gen_score");
}
