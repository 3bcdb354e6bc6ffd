/* jinja.h: the subset of Jinja2 that chat templates use, rendered the way
 * transformers' apply_chat_template renders them.
 *
 * The environment matches transformers' (ImmutableSandboxedEnvironment with
 * trim_blocks=True, lstrip_blocks=True, loopcontrols): {{ }}, {% if/elif/else %},
 * {% for x in xs [if cond] %} with loop.index/index0/first/last/length/
 * revindex/revindex0/previtem/nextitem and {% else %}, {% set %} (names,
 * namespace attributes, {% set x %}..{% endset %}), {% break %}/{% continue %},
 * {% generation %}, whitespace control {%- -%} {%+ +%}, comments; expressions
 * with literals (strings, numbers, lists, tuples, dicts), + - * / // % **,
 * ~, comparisons, in / not in, and/or/not, x if c else y, item and attribute
 * access, slicing, filters (trim length count upper lower title capitalize
 * tojson default/d first last join list string int float abs replace reverse
 * items selectattr rejectattr select reject map unique round safe indent),
 * tests (defined undefined none string number integer float mapping iterable
 * sequence boolean true false even odd equalto eq ne divisibleby), string
 * methods (strip lstrip rstrip startswith endswith split replace title upper
 * lower capitalize join find count), dict methods (items keys values get),
 * and the globals raise_exception, strftime_now, namespace, range, dict.
 *
 * Anything else (macros, includes, custom filters) fails with a one-line
 * error giving template line and column; no template can crash the renderer
 * (work, output and memory are capped). Known differences from Jinja:
 * upper/lower/title change ASCII letters only. */
#ifndef PL_JINJA_H
#define PL_JINJA_H

#include <stddef.h>
#include <stdint.h>
#include <cjson/cJSON.h>
#include "../core/error.h"

typedef struct pl_jinja pl_jinja;

/* Parse a template (len bytes, need not be NUL-terminated). name appears in
 * error messages ("<name>:LINE:COL: ..."); NULL means "template". */
int pl_jinja_parse(pl_jinja **out, const char *src, size_t len, const char *name, pl_err *err);
void pl_jinja_free(pl_jinja *t);

typedef struct pl_jinja_opts {
    /* strftime_now() formats this time (seconds since the epoch, UTC) when
     * fixed_time is set; otherwise the current local time, as transformers
     * does. */
    int fixed_time;
    int64_t now;
    size_t max_output;  /* bytes; 0 = 64 MiB */
    uint64_t max_steps; /* evaluation steps; 0 = 20 million */
    size_t max_memory;  /* bytes of intermediate values; 0 = 512 MiB */
} pl_jinja_opts;

/* Render with the variables in vars (a JSON object: messages, bos_token,
 * add_generation_prompt, ...). *out is malloc'd and NUL-terminated; *out_len
 * (may be NULL) gets its length. A raise_exception() in the template returns
 * PL_EINVAL with "<name>:LINE:COL: raise_exception: <message>". opts may be
 * NULL. */
int pl_jinja_render(const pl_jinja *t, const cJSON *vars, const pl_jinja_opts *opts,
                    char **out, size_t *out_len, pl_err *err);

/* Parse and render in one call. */
int pl_jinja_render_string(const char *src, size_t len, const char *name, const cJSON *vars,
                           const pl_jinja_opts *opts, char **out, size_t *out_len, pl_err *err);

#endif
