/* test_jinja.c: the Jinja subset against outputs jinja2 gave (transformers' environment), errors with positions, fuzzing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/error.h"
#include "datasets/jinja.h"

/* Expected strings were produced by jinja2 3.1.6 with transformers' settings
 * (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols,
 * its tojson/raise_exception/strftime_now, namespace) on VARS below. */
static const char *VARS =
    "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": "
    "\"Hi {{x}}\\n  there \\u00fc\"}, {\"role\": \"assistant\", \"content\": \" Hello! \"}, {\"role\": \"user\", "
    "\"content\": \"Bye\"}], \"bos_token\": \"<s>\", \"eos_token\": \"</s>\", \"add_generation_prompt\": true}";

static const struct {
    const char *tmpl, *want;
} cases[] = {
    {"{% set x = 1 %}{% for i in range(3) %}{{ x }}{% set x = x + 1 %}{{x}};{% endfor %}{{x}}",
     "12;12;12;1"},
    {"{{ 1.0 }} {{ 1e20 }} {{ 0.1+0.2 }} {{ [1,\"a\",none,true] }} {{ {\"a\":1} }} {{ 3/2 }} {{ 7//2 }} {{ -7 % 3 }} {{ 2**10 }} {{ (1,2) }} {{ (1,) }} {{ 1e-5 }} {{ 123456789012345678.0 }}",
     "1.0 1e+20 0.30000000000000004 [1, 'a', None, True] {'a': 1} 1.5 3 2 1024 (1, 2) (1,) 1e-05 1.2345678901234568e+17"},
    {"  {% if true %}\n  x\n  {% endif %}\n",
     "  x\n"},
    {"a  {# c #}  b\n{#- c #}\n z {{ undefined_x }}|{{ none }}|{{ undefined_x is none}}",
     "a    b z |None|False"},
    {"{{ \"  a b \".split() }} {{ \"a,b\".split(\",\") }} {{ \"hello world\".title() }} {{ messages|length }} {{ \"x\"*3 }}",
     "['a', 'b'] ['a', 'b'] Hello World 4 xxx"},
    {"{{ \"abc\"[1:] }} {{ \"\\d\\u00e9\\x41\\n\" }} {{ [1,2]|tojson }} {{ {\"a\":[1,{\"b\":2.5}]}|tojson(indent=2) }} {{ \"ÿé\"[::-1] }} {{ messages[::-1]|map(attribute=\"role\")|join(\",\") }}",
     "bc \\déA\n [1, 2] {\n  \"a\": [\n    1,\n    {\n      \"b\": 2.5\n    }\n  ]\n} éÿ user,assistant,user,system"},
    {"{% for m in messages %}{{ loop.index }}/{{ loop.length }}{{ m.role|upper }}:{{ m[\"content\"]|trim }}{% if not loop.last %}|{% endif %}{% endfor %}",
     "1/4SYSTEM:Be brief.|2/4USER:Hi {{x}}\n  there ü|3/4ASSISTANT:Hello!|4/4USER:Bye"},
    {"{%- for m in messages -%}\n  {{- m.content -}}\n  {%- if loop.first %} F{% elif loop.last %} L{% else %} M{% endif -%}\n{%- endfor -%}\n\n",
     "Be brief. FHi {{x}}\n  there ü M Hello!  MBye L"},
    {"{% set ns = namespace(found=false, n=0) %}{% for m in messages %}{% if m.role == \"user\" %}{% set ns.n = ns.n + 1 %}{% set ns.found = true %}{% endif %}{% endfor %}{{ ns.found }} {{ ns.n }}",
     "True 2"},
    {"{{ messages | selectattr(\"role\", \"equalto\", \"user\") | list | length }} {{ messages|map(attribute=\"role\")|list }} {{ messages|first }}",
     "2 ['system', 'user', 'assistant', 'user'] {'role': 'system', 'content': 'Be brief.'}"},
    {"{% for k, v in {\"a\": 1, \"b\": [2]}.items() if k != \"a\" %}{{k}}={{v}}{% endfor %}",
     "b=[2]"},
    {"{{ x if x is defined else \"nope\" }} {{ \"a\" in \"cat\" }} {{ 1 not in [1,2] }} {{ 1 < 2 < 3 }} {{ \"b\" ~ 1 ~ none }} {{ not true or false and true }}",
     "nope True False True b1None False"},
    {"{% for m in messages %}{% if loop.index0 == 1 %}{% break %}{% endif %}{{ m.role }}{% endfor %}|{% for i in range(5) %}{% if i is even %}{% continue %}{% endif %}{{ i }}{% endfor %}",
     "system|13"},
    {"{% set s %}inner {{ 1 + 1 }}{% endset %}[{{ s }}]",
     "[inner 2]"},
    {"{{ strftime_now(\"%d %b %Y\") }} {{ strftime_now(\"%Y-%m-%d\") }}",
     "26 Jul 2024 2024-07-26"},
    {"{{ messages[0].content.startswith(\"Be\") }} {{ \"abc\".endswith((\"x\",\"c\")) }} {{ \" x \".strip() }}|{{ \"xxaxx\".strip(\"x\") }} {{ \"a-b-c\".replace(\"-\", \"+\") }} {{ \"A,B\".lower() }} {{ \"hello\"|capitalize }}",
     "True True x|a a+b+c a,b Hello"},
    {"{{ messages[1][\"content\"] }}{{ messages[-1].content }}{{ messages[10] }}{{ messages[0][\"nokey\"] }}",
     "Hi {{x}}\n  there üBye"},
    {"{{ none|default(\"d\") }} {{ undefined_y|default(\"d\") }} {{ \"\"|default(\"e\", true) }} {{ 3.7|int }} {{ \"12\"|int + 1 }} {{ -3|abs }} {{ [3,1,3]|unique|list }} {{ [1,2,3]|reverse|list }}",
     "None d e 3 13 3 [3, 1] [3, 2, 1]"},
    {"{{ {\"b\": 1, \"a\": \"é\\n\\\"q\\\"\", \"c\": none, \"d\": true, \"e\": 1.5} | tojson }}",
     "{\"b\": 1, \"a\": \"é\\n\\\"q\\\"\", \"c\": null, \"d\": true, \"e\": 1.5}"},
    {"{% if messages[0][\"role\"] == \"system\" %}{% set loop_messages = messages[1:] %}{% else %}{% set loop_messages = messages %}{% endif %}{{ loop_messages|length }}",
     "3"},
    {"   {% for m in messages %}\n   {{ m.role }}\n   {% endfor %}\n   done",
     "   system\n   user\n   assistant\n   user\n   done"},
    {"{%+ if true %} a {%- endif +%}\n  b",
     " a\n  b"},
    {"{{ messages[0] == messages[0] }} {{ messages[0] == messages[1] }} {{ [1,2] == [1,2] }} {{ 1 == 1.0 }} {{ true == 1 }}",
     "True False True True True"},
    {"{{ \"%s\" }} {{ 10 / 4 }} {{ 10 // 4.0 }} {{ 2 ** -1 }} {{ 1_000 }} {{ 5 % -3 }}",
     "%s 2.5 2.0 0.5 1000 -1"},
    {"{% for x in [] %}a{% else %}empty{% endfor %}",
     "empty"},
    {"{{ \"hello world foo\".split(\" \", 1) }} {{ \"  a  b  \".split(None, 1) }} {{ \"abc\".find(\"c\") }}",
     "['hello', 'world foo'] ['a', 'b  '] 2"},
    {"{% set a = [1, 2, 3] %}{{ a[1:] }}{{ a[:-1] }}{{ a[::2] }}{{ a[5:] }}{{ a[-10:2] }}",
     "[2, 3][1, 2][1, 3][][1, 2]"},
    {"{% for m in messages %}{{ loop.previtem.role if loop.previtem is defined else \"-\" }}{% endfor %}",
     "-systemuserassistant"},
    /* a namespace assigned into itself (found by fuzz_jinja: printing it recursed until the stack overflowed) */
    {"{% set ns = namespace(a=1) %}{% set ns.a = ns %}{{ ns }} {% set ns.b = [ns] %}{{ ns.b }}",
     "<Namespace {'a': <Namespace {...}>}> [<Namespace {'a': <Namespace {...}>, 'b': [...]}>]"},
    {"{{ {\"a\":1}.get(\"a\") }} {{ {\"a\":1}.get(\"b\") }} {{ {\"a\":1}.get(\"b\", 2) }} {{ {\"a\":1}|items|list }}",
     "1 None 2 [('a', 1)]"},
};

static int render(const char *tmpl, const char *vars_json, char **out, pl_err *err) {
    cJSON *vars = cJSON_Parse(vars_json);
    pl_jinja_opts o = {0};
    o.fixed_time = 1;
    o.now = 1721952000; /* 2024-07-26 00:00:00 UTC */
    size_t n;
    int rc = pl_jinja_render_string(tmpl, strlen(tmpl), "t", vars, &o, out, &n, err);
    cJSON_Delete(vars);
    return rc;
}

static void test_cases(void) {
    int ok = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *out = NULL;
        pl_err err = {0};
        int rc = render(cases[i].tmpl, VARS, &out, &err);
        int same = rc == 0 && !strcmp(out, cases[i].want);
        CHECK(same, "case %zu: %s\n  want: %s\n  got:  %s", i, cases[i].tmpl, cases[i].want, rc ? err.msg : out);
        ok += same;
        free(out);
    }
    printf("report: jinja: %d/%zu templates render as jinja2 does\n", ok, sizeof cases / sizeof *cases);
}

/* Errors: one line with the template line and column; never a crash. */
static void test_errors(void) {
    static const struct {
        const char *tmpl;
        int code;
        const char *has;
    } errs[] = {
        {"{{ raise_exception('boom') }}", PL_EINVAL, "t:1:4: raise_exception: boom"},
        {"a\n{% if x %}", PL_EFORMAT, "t:2:4: 'if' opened here is never closed"},
        {"{{ foo.bar }}", PL_EINVAL, "'foo' is undefined"},
        {"{{ 'x' + 1 }}", PL_EINVAL, "unsupported operand types for +: str and int"},
        {"line1\nline2 {% macro f() %}x{% endmacro %}", PL_EUNSUPPORTED, "t:2:10: unsupported statement 'macro'"},
        {"{{ x | frobnicate }}", PL_EUNSUPPORTED, "t:1:8: unsupported filter 'frobnicate'"},
        {"{{ 1 is fancy }}", PL_EUNSUPPORTED, "unsupported test 'fancy'"},
        {"{{ 'abc'.zfill(5) }}", PL_EUNSUPPORTED, "unsupported method str.zfill()"},
        {"{{ 'abc }}", PL_EFORMAT, "unterminated string literal"},
        {"{{ 1 +  }}", PL_EFORMAT, "t:1:9: expected an expression, found '}}'"},
        {"{% endif %}", PL_EFORMAT, "unexpected 'endif'"},
        {"{{ 1 / 0 }}", PL_EINVAL, "division by zero"},
        {"{% for i in range(10000000) %}{% endfor %}", PL_ERANGE, "too large"},
        {"{% set ns = 3 %}{% set ns.a = 1 %}", PL_EINVAL, "not a namespace"},
        {"{{ x.__class__ }}", PL_EINVAL, "unsafe"},
        {"{% break %}", PL_EFORMAT, "outside a loop"},
        {"{{ 9223372036854775807 + 1 }}", PL_ERANGE, "integer overflow"},
        {"{# never closed", PL_EFORMAT, "unclosed comment"},
        {"{{ x ", PL_EFORMAT, "unclosed {{ tag"},
        /* an error inside a set block, after output: nothing leaks (LeakSanitizer checks at exit) */
        {"before {% set y %}inside {{ raise_exception('in a set block') }}{% endset %}", PL_EINVAL,
         "raise_exception: in a set block"},
        /* a template's own string in the message cannot start a second line or drive the terminal */
        {"{{ raise_exception('x\\nt:9:9: fake\x1b[31m') }}", PL_EINVAL, "raise_exception: x\\nt:9:9: fake\\x1b[31m"},
    };
    for (size_t i = 0; i < sizeof errs / sizeof *errs; i++) {
        char *out = NULL;
        pl_err err = {0};
        int rc = render(errs[i].tmpl, "{\"x\": {}}", &out, &err);
        CHECK(rc == errs[i].code && strstr(err.msg, errs[i].has), "error %zu (%s): want %d '%s', got %d '%s'", i,
              errs[i].tmpl, errs[i].code, errs[i].has, rc, err.msg);
        int ctl = 0;
        for (const unsigned char *c = (const unsigned char *)err.msg; *c; c++) ctl |= *c < 0x20 || *c == 0x7f;
        CHECK(!ctl, "error %zu is one line without control bytes: %s", i, err.msg);
        free(out);
    }
    /* deep nesting is refused, not a stack overflow */
    char deep[2100];
    size_t k = 0;
    k += (size_t)snprintf(deep, sizeof deep, "{{ ");
    for (int i = 0; i < 1000; i++) deep[k++] = '(';
    deep[k++] = '1';
    for (int i = 0; i < 1000; i++) deep[k++] = ')';
    snprintf(deep + k, sizeof deep - k, " }}");
    char *out = NULL;
    pl_err err = {0};
    int rc = render(deep, "{}", &out, &err);
    CHECK(rc == PL_EUNSUPPORTED && strstr(err.msg, "nested too deeply"), "deep nesting: %s", err.msg);
    free(out);
    /* step cap */
    {
        cJSON *v0 = cJSON_CreateObject();
        pl_jinja_opts so = {0};
        so.max_steps = 100000;
        size_t n0;
        const char *spin = "{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}";
        rc = pl_jinja_render_string(spin, strlen(spin), "t", v0, &so, &out, &n0, &err);
        CHECK(rc == PL_ERANGE && strstr(err.msg, "more than 100000 steps"), "step cap: %s", err.msg);
        /* memory cap */
        so.max_steps = 0;
        so.max_memory = 4u << 20;
        const char *hog = "{% set ns = namespace(s='x') %}{% for i in range(100) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}";
        rc = pl_jinja_render_string(hog, strlen(hog), "t", v0, &so, &out, &n0, &err);
        CHECK(rc == PL_ENOMEM && strstr(err.msg, "out of memory"), "memory cap: %s", err.msg);
        cJSON_Delete(v0);
    }
    /* output cap */
    cJSON *v = cJSON_CreateObject();
    pl_jinja_opts o = {0};
    o.max_output = 1000;
    size_t n;
    const char *big = "{% for i in range(1000) %}xxxxxxxxxx{% endfor %}";
    rc = pl_jinja_render_string(big, strlen(big), "t", v, &o, &out, &n, &err);
    CHECK(rc == PL_ERANGE && strstr(err.msg, "output exceeds 1000 bytes"), "output cap: %s", err.msg);
    cJSON_Delete(v);
}

/* Whitespace control as transformers configures it (trim_blocks, lstrip_blocks). */
static void test_whitespace(void) {
    static const struct {
        const char *tmpl, *want;
    } ws[] = {
        {"{% if true %}\nyes\n{% endif %}\n", "yes\n"},
        {"  {% if true %}\n  x\n  {% endif %}\n", "  x\n"},
        {"a {{- ' b ' -}} c", "a b c"},
        {"a\n  {%- if true %} b{% endif %}", "a b"},
        {"{%+ if true %}x{% endif %}", "x"},
        {"  {%+ if true %}x{% endif %}", "  x"},
        {"{% if true +%}\nx{% endif %}", "\nx"},
        {"x  {# comment #}\ny", "x  y"},
        {"x\n  {# comment #}\ny", "x\ny"},
        {"a\r\nb\r\n", "a\nb"},
        {"{{ 'a' }}\n", "a"},
        {"{{ 'a' }}\n\n", "a\n"},
    };
    for (size_t i = 0; i < sizeof ws / sizeof *ws; i++) {
        char *out = NULL;
        pl_err err = {0};
        int rc = render(ws[i].tmpl, "{}", &out, &err);
        CHECK(rc == 0 && !strcmp(out, ws[i].want), "whitespace %zu: want [%s] got [%s]", i, ws[i].want, rc ? err.msg : out);
        free(out);
    }
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}

/* Random templates from a soup of template fragments and bytes: every one
 * must either render or fail with a message, never crash, leak or hang. */
static void test_fuzz(void) {
    static const char *frag[] = {
        "{{", "}}", "{%", "%}", "{#", "#}", "{%-", "-%}", "{{-", "-}}", " if ", " for ", " in ", " endif ", " endfor ",
        " else ", " elif ", " set ", " = ", "messages", "message", "['role']", ".content", "[1:]", "[-1]", "loop.index0",
        " + ", " ~ ", " == ", " != ", " and ", " or ", " not ", " is defined ", " is none ", "|trim", "|length", "|tojson",
        "|default('x')", "'str'", "\"s\\n\"", "42", "3.5", "(", ")", "[", "]", "{", "}", ",", ":", "namespace(a=1)",
        "raise_exception('r')", "strftime_now('%Y')", " true ", " none ", "x", "\n", "  ", "ns.a", ".strip()",
        ".split(',')", "range(3)", " % ", " // ", "**", "-", "selectattr('role','equalto','user')", "|map(attribute='role')",
        "|join(',')", "\xff", "\xc3", "{% for m in messages %}", "{% endfor %}", "{% if x %}", "{% endif %}", "{{ x }}",
    };
    const size_t nf = sizeof frag / sizeof *frag;
    int rendered = 0, failed = 0, bad_msg = 0, unstable = 0;
    for (int it = 0; it < 3000; it++) {
        char t[512];
        size_t k = 0;
        int parts = 1 + (int)(rnd() % 14);
        for (int p = 0; p < parts; p++) {
            const char *f = frag[rnd() % nf];
            size_t l = strlen(f);
            if (k + l >= sizeof t) break;
            memcpy(t + k, f, l);
            k += l;
        }
        t[k] = 0;
        char *out = NULL;
        pl_err err = {0};
        cJSON *vars = cJSON_Parse(VARS);
        pl_jinja_opts o = {0};
        o.fixed_time = 1;
        o.max_steps = 200000;
        size_t n;
        int rc = pl_jinja_render_string(t, k, "fuzz", vars, &o, &out, &n, &err);
        if (rc == 0) {
            rendered++;
            /* a second render gives the same bytes */
            char *out2 = NULL;
            size_t n2 = 0;
            pl_err err2 = {0};
            if (pl_jinja_render_string(t, k, "fuzz", vars, &o, &out2, &n2, &err2) != 0 || n2 != n ||
                memcmp(out, out2, n) != 0)
                unstable++;
            free(out2);
        } else {
            failed++;
            /* one line naming the template, with no control bytes */
            int ctl = 0;
            for (const unsigned char *c = (const unsigned char *)err.msg; *c; c++) ctl |= *c < 0x20 || *c == 0x7f;
            if (!err.msg[0] || strncmp(err.msg, "fuzz", 4) != 0 || ctl) {
                if (bad_msg++ < 5) fprintf(stderr, "fuzz: bad message for [%s]: %s\n", t, err.msg);
            }
        }
        cJSON_Delete(vars);
        free(out);
    }
    CHECK(bad_msg == 0, "fuzz: every failure is one line naming the template, no control bytes (%d not)", bad_msg);
    CHECK(unstable == 0, "fuzz: every rendered template renders the same bytes again (%d did not)", unstable);
    CHECK(rendered > 50 && failed > 50, "fuzz reached both outcomes (%d rendered, %d failed)", rendered, failed);
    printf("report: jinja fuzz: 3000 random templates, %d rendered, %d failed cleanly\n", rendered, failed);
}

int main(void) {
    test_cases();
    test_errors();
    test_whitespace();
    test_fuzz();
    return check_summary("test_jinja");
}
