/* opt_bind_model.c: the Lua model binding (plugins/bind_model.c) and the
 * built-in generator plugins (plugins/lib/) on SmolLM2-135M-Instruct.
 *
 * - m:generate greedy on a chat prompt equals what `potluck generate --chat
 *   --temperature 0` produces (the same C path, driven here directly:
 *   chat template + generation prompt, pl_generate with EOS/end-of-turn
 *   stops, tokens decoded with their predecessor);
 * - sampling with a seed: identical at batch 1 and batch 4 and run to run,
 *   different for another seed; opts.stop cuts the text;
 * - count_tokens = pl_tokenizer_encode's length; perplexity finite and lower
 *   for a fluent sentence than for its words shuffled;
 * - self_instruct (n=2) and persona (n=3): exactly n samples with provenance
 *   (same-seed reruns through the real host: tests/big_recipe_generate.sh, make test-big); distill answers 2 inputs;
 *   evol_instruct over 2 inputs (1 round) emits with provenance, each evolution after its input.
 * The plugins run in a plain Lua state with a minimal fake `potluck` module
 * (register, read_file) plus the real C text helpers (plugins/bind_text.c)
 * and a JSON decoder; the full host runs them in tests/big_recipe_generate.sh, make test-big.
 * Runs on the optimized build; needs POTLUCK_MODEL. */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "datasets/chat.h"
#include "datasets/tokenizer.h"
#include "plugins/bind_model.h"
#include "plugins/bind_text.h"
#include "plugins/luajson.h"
#include "trainer/generate.h"
#include "trainer/model.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int t_json_decode(lua_State *L) {
    size_t n;
    const char *src = luaL_checklstring(L, 1, &n);
    cJSON *j = cJSON_ParseWithLength(src, n);
    if (!j) return luaL_error(L, "invalid JSON");
    pl_lua_push_json(L, j);
    cJSON_Delete(j);
    return 1;
}

/* The fake `potluck` module and the stage runner, in Lua. */
static const char *harness =
    "local specs = {}\n"
    "local M = {}\n"
    "function M.register(s) assert(s.api == 1 and s.kind and s.name, 'bad spec'); specs[s.kind .. ':' .. s.name] = s end\n"
    "function M.read_file(path) local f = assert(io.open(path, 'rb')); local d = f:read('a'); f:close(); return d end\n"
    "function M.text(s)\n"
    "  if s.text then return s.text end\n"
    "  local t = {}\n"
    "  for _, m in ipairs(s.messages or {}) do t[#t + 1] = m.content end\n"
    "  return table.concat(t, '\\n')\n"
    "end\n"
    "M._specs = specs\n"
    "package.preload.potluck = function() return M end\n"
    "-- deterministic serialization (sorted keys) to compare runs\n"
    "function ser(v)\n"
    "  if type(v) ~= 'table' then return type(v) == 'string' and string.format('%q', v) or tostring(v) end\n"
    "  local keys = {}\n"
    "  for k in pairs(v) do keys[#keys + 1] = k end\n"
    "  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)\n"
    "  local out = {}\n"
    "  for _, k in ipairs(keys) do out[#out + 1] = tostring(k) .. '=' .. ser(v[k]) end\n"
    "  return '{' .. table.concat(out, ',') .. '}'\n"
    "end\n"
    "LOG = {}\n"
    "function run_stage(kind, name, given, inputs, seed)\n"
    "  local spec = assert(specs[kind .. ':' .. name], 'no plugin ' .. kind .. ':' .. name)\n"
    "  local p = {}\n"
    "  for k in pairs(given) do assert(spec.params[k], name .. ': unknown parameter ' .. k) end\n"
    "  for k, d in pairs(spec.params) do\n"
    "    if given[k] ~= nil then p[k] = given[k] else p[k] = d.default end\n"
    "    assert(not d.required or p[k] ~= nil, name .. ': missing ' .. k)\n"
    "  end\n"
    "  math.randomseed(seed)\n"
    "  local ctx = { seed = seed, stage = 'test.' .. name,\n"
    "    log = function(msg) LOG[#LOG + 1] = msg end,\n"
    "    model = function() return MODEL end, load_model = function(n) return MODEL end,\n"
    "    tokenizer = function() return MODEL end }\n"
    "  local out = {}\n"
    "  if spec.stream then\n"
    "    local i = 0\n"
    "    spec.stream(p, ctx, function() return function() i = i + 1; return inputs[i] end end,\n"
    "      function(s) out[#out + 1] = s end)\n"
    "  else\n"
    "    local f = spec.each(p, ctx)\n"
    "    for _, s in ipairs(inputs) do local keep, why = f(s); out[#out + 1] = { keep = keep, why = why } end\n"
    "  end\n"
    "  return out\n"
    "end\n";

static int run_lua(lua_State *L, const char *src, const char *name) {
    if (luaL_loadbufferx(L, src, strlen(src), name, "t") || lua_pcall(L, 0, LUA_MULTRET, 0)) {
        fprintf(stderr, "%s: %s\n", name, lua_tostring(L, -1));
        lua_pop(L, 1);
        return -1;
    }
    return 0;
}

/* The expected greedy chat continuation, made as cmd_generate makes it. */
static char *expected_chat(pl_model *m, pl_tokenizer *tok, const char *user, int max_tokens) {
    pl_err err = {0};
    pl_chat c = {0};
    pl_chat_text r = {0};
    pl_chat_tokens t = {0};
    pl_chat_opts o = {0};
    pl_chat_opts_from_tokenizer(&o, tok);
    o.add_generation_prompt = 1;
    o.mask = PL_MASK_ALL;
    int rc = pl_chat_add(&c, "user", user, &err);
    if (!rc) rc = pl_chat_render(pl_tokenizer_chat_template(tok), &c, &o, &r, &err);
    if (!rc) rc = pl_chat_tokenize(tok, &r, &t, &err);
    int32_t stops[8];
    int n_stop = 0;
    const char *eot[] = {"<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>"};
    int eos = m->cfg.eos_id >= 0 ? m->cfg.eos_id : pl_tokenizer_eos(tok);
    for (int k = 0; k < 5; k++) {
        int id = pl_tokenizer_find(tok, eot[k]);
        if (id >= 0 && id != eos) stops[n_stop++] = id;
    }
    if (eos >= 0) stops[n_stop++] = eos;
    pl_gen_opts go = {.sampler = {.temperature = 0, .top_p = 1, .seed = 42}, .max_tokens = max_tokens,
                      .stop = stops, .n_stop = n_stop};
    int32_t *out = NULL;
    int n_out = 0;
    const int32_t *pp = t.ids;
    if (!rc) rc = pl_generate(m, 1, &pp, &t.n, &go, &out, &n_out, NULL, &err);
    char *text = NULL;
    if (!rc) {
        text = calloc((size_t)n_out * 64 + 1, 1);
        size_t len = 0;
        int32_t prev = t.ids[t.n - 1];
        for (int i = 0; i < n_out; i++) {
            int k = pl_tokenizer_decode(tok, prev, out[i], 0, text + len, 64);
            if (k > 0) len += (size_t)k;
            prev = out[i];
        }
    } else {
        fprintf(stderr, "expected_chat: %s\n", err.msg);
    }
    free(out);
    pl_chat_tokens_free(&t);
    pl_chat_text_free(&r);
    pl_chat_clear(&c);
    return text;
}

/* Evaluate a Lua expression returning one string; malloc'd copy or NULL. */
static char *lua_str(lua_State *L, const char *expr) {
    char buf[8192];
    snprintf(buf, sizeof buf, "return %s", expr);
    if (luaL_loadbufferx(L, buf, strlen(buf), "=expr", "t") || lua_pcall(L, 0, 1, 0)) {
        fprintf(stderr, "lua: %s\n  in: %s\n", lua_tostring(L, -1), expr);
        lua_pop(L, 1);
        return NULL;
    }
    const char *s = lua_tostring(L, -1);
    char *r = s ? strdup(s) : NULL;
    lua_pop(L, 1);
    return r;
}

static int lua_true(lua_State *L, const char *expr) {
    char buf[8192];
    snprintf(buf, sizeof buf, "tostring(%s)", expr);
    char *s = lua_str(L, buf);
    int ok = s && !strcmp(s, "true");
    if (!ok) fprintf(stderr, "  %s -> %s\n", expr, s ? s : "(error)");
    free(s);
    return ok;
}

static void load_plugin(lua_State *L, const char *file) {
    char p[512];
    snprintf(p, sizeof p, "plugins/lib/%s", file);
    int rc = luaL_loadfilex(L, p, "t");
    if (!rc) rc = lua_pcall(L, 0, 0, 0);
    CHECK(rc == 0, "%s: %s", p, rc ? lua_tostring(L, -1) : "");
    if (rc) lua_pop(L, 1);
}

int main(void) {
    const char *model_path = check_env("POTLUCK_MODEL");
    double t_start = now_s();
    pl_err err = {0};
    pl_model *m = NULL;
    pl_tokenizer *tok = NULL;
    REQUIRE(pl_model_load(&m, model_path, NULL, &err) == 0, "%s", err.msg);
    REQUIRE(pl_model_tokenizer(m, NULL, &tok, &err) == 0, "%s", err.msg);

    lua_State *L = luaL_newstate();
    luaL_openlibs(L);
    REQUIRE(run_lua(L, harness, "=harness") == 0, "harness");
    /* the real C text helpers (pl.text, pl.rouge_l, ...) and JSON decoder on
     * the fake module; plugins find genutil.lua in plugins/lib */
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "preload");
    lua_getfield(L, -1, "potluck");
    lua_call(L, 0, 1);
    pl_bind_text(L, lua_gettop(L));
    lua_pushcfunction(L, t_json_decode);
    lua_setfield(L, -2, "json_decode");
    lua_pop(L, 3);
    REQUIRE(run_lua(L, "package.path = 'plugins/lib/?.lua;' .. package.path", "=path") == 0, "package.path");
    REQUIRE(pl_lua_model_push(L, model_path, "base", &err) == 0, "%s", err.msg);
    lua_setglobal(L, "MODEL");
    pl_lua_model_set_default_seed(L, 1234);

    /* handle basics: name, locked metatable, errors as one line */
    CHECK(lua_true(L, "MODEL:name() == 'base'"), "m:name()");
    CHECK(lua_true(L, "getmetatable(MODEL) == 'locked'"), "metatable is locked");
    CHECK(lua_true(L, "not pcall(setmetatable, MODEL, {})"), "setmetatable on the handle fails");
    {
        char *e = lua_str(L, "select(2, pcall(MODEL.generate, MODEL, {42}))");
        CHECK(e && strstr(e, "prompt 1: expected a string or a list of messages, got number") && !strchr(e, '\n'),
              "bad prompt error: %s", e ? e : "(none)");
        free(e);
        e = lua_str(L, "select(2, pcall(MODEL.generate, MODEL, {'x'}, {temperature = 'hot'}))");
        CHECK(e && strstr(e, "opts.temperature: expected a number"), "bad opt error: %s", e ? e : "(none)");
        free(e);
    }
    /* a handle on a missing file: a clean error when first used, again later */
    {
        REQUIRE(pl_lua_model_push(L, "/nonexistent/model.gguf", "missing", &err) == 0, "%s", err.msg);
        lua_setglobal(L, "BAD");
        char *e1 = lua_str(L, "select(2, pcall(BAD.count_tokens, BAD, 'x'))");
        char *e2 = lua_str(L, "select(2, pcall(BAD.generate, BAD, {'x'}))");
        CHECK(e1 && strstr(e1, "missing") && strstr(e1, "/nonexistent/model.gguf") && !strchr(e1, '\n'),
              "missing model error: %s", e1 ? e1 : "(none)");
        CHECK(e1 && e2 && !strcmp(e1, e2), "the load error is remembered: '%s' vs '%s'", e1 ? e1 : "", e2 ? e2 : "");
        free(e1);
        free(e2);
    }

    /* greedy chat generation = the cmd_generate path */
    const char *user = "Give three tips for keeping a sourdough starter alive.";
    char *want = expected_chat(m, tok, user, 32);
    CHECK(want && strlen(want) > 20, "expected text: %s", want ? want : "(null)");
    char expr[1024];
    snprintf(expr, sizeof expr, "MODEL:generate({{{role = 'user', content = %s}}}, {temperature = 0, max_tokens = 32})[1]",
             "'Give three tips for keeping a sourdough starter alive.'");
    double t0 = now_s();
    char *got = lua_str(L, expr);
    double t_greedy = now_s() - t0;
    CHECK(got && want && !strcmp(got, want), "greedy chat generation differs:\n got: %s\nwant: %s", got ? got : "(null)",
          want ? want : "(null)");
    /* the same prompt twice plus a raw one in one batch: row 1 unchanged */
    snprintf(expr, sizeof expr,
             "MODEL:generate({{{role = 'user', content = %s}}, 'The capital of France is', {{role = 'user', content = %s}}}, "
             "{temperature = 0, max_tokens = 32, batch = 3})[3]",
             "'Give three tips for keeping a sourdough starter alive.'", "'Give three tips for keeping a sourdough starter alive.'");
    char *got3 = lua_str(L, expr);
    CHECK(got3 && want && !strcmp(got3, want), "greedy result in a batch of 3 differs:\n got: %s", got3 ? got3 : "(null)");
    free(got3);
    /* stop strings cut the text before the stop string */
    if (want && strlen(want) > 12) {
        char stop[8];
        memcpy(stop, want + 10, 3);
        stop[3] = 0;
        char *cut = strstr(want, stop);
        size_t keep = (size_t)(cut - want);
        char e[1024];
        snprintf(e, sizeof e,
                 "MODEL:generate({{{role = 'user', content = 'Give three tips for keeping a sourdough starter alive.'}}}, "
                 "{temperature = 0, max_tokens = 32, stop = {'zzzzqqq', %s}})[1]", "...");
        /* build the stop literal safely with %q */
        lua_pushlstring(L, stop, 3);
        lua_setglobal(L, "STOP");
        snprintf(e, sizeof e,
                 "MODEL:generate({{{role = 'user', content = 'Give three tips for keeping a sourdough starter alive.'}}}, "
                 "{temperature = 0, max_tokens = 32, stop = {'zzzzqqq', STOP}})[1]");
        char *gs = lua_str(L, e);
        CHECK(gs && strlen(gs) == keep && !strncmp(gs, want, keep), "stop string: got '%s', want the first %zu bytes",
              gs ? gs : "(null)", keep);
        free(gs);
    }
    free(got);
    free(want);

    /* sampling: batch-independent, reproducible, seed-dependent */
    t0 = now_s();
    REQUIRE(run_lua(L,
                    "P = {'Once upon a time', {{role = 'user', content = 'Name a color.'}}, 'The best way to learn is',"
                    " {{role = 'user', content = 'Write a haiku about rain.'}}, 'In 1850,'}\n"
                    "function S(seed, batch) return ser(MODEL:generate(P, {temperature = 0.9, top_p = 0.95, max_tokens = 12,"
                    " seed = seed, batch = batch})) end\n"
                    "A, B, B2, C, D, E = S(7, 1), S(7, 4), S(7, 4), S(7, 8), S(7, 2), S(8, 4)",
                    "=sampling") == 0, "sampling setup");
    CHECK(lua_true(L, "A == B"), "seed 7: batch 1 and batch 4 differ");
    CHECK(lua_true(L, "B == B2"), "seed 7: two runs differ");
    CHECK(lua_true(L, "C == D and C == B"), "seed 7: batch 8, batch 2 and batch 4 differ");
    CHECK(lua_true(L, "B ~= E"), "seeds 7 and 8 give the same samples");
    CHECK(lua_true(L, "#MODEL:generate(P, {max_tokens = 4}) == 5"), "one result per prompt");
    CHECK(lua_true(L, "#MODEL:generate({}, {}) == 0"), "empty prompt list");
    double t_sampling = now_s() - t0;

    /* token counts */
    const char *text = "Hello world! Tokenizers split text into pieces, like <|im_start|> this.";
    int32_t *ids = NULL;
    int n_ids = 0;
    REQUIRE(pl_tokenizer_encode(tok, text, strlen(text), 0, 0, &ids, &n_ids, &err) == 0, "%s", err.msg);
    lua_pushstring(L, text);
    lua_setglobal(L, "TEXT");
    char *cnt = lua_str(L, "tostring(MODEL:count_tokens(TEXT))");
    CHECK(cnt && atoi(cnt) == n_ids, "count_tokens %s, pl_tokenizer_encode %d", cnt ? cnt : "(null)", n_ids);
    free(cnt);
    char want_ids[4096] = "";
    for (int i = 0; i < n_ids; i++) snprintf(want_ids + strlen(want_ids), sizeof want_ids - strlen(want_ids), "%d,", ids[i]);
    char *enc = lua_str(L, "table.concat(MODEL:encode(TEXT), ',') .. ','");
    CHECK(enc && !strcmp(enc, want_ids), "encode: %s vs %s", enc ? enc : "(null)", want_ids);
    free(enc);
    free(ids);
    CHECK(lua_true(L, "MODEL:decode(MODEL:encode(TEXT)) == TEXT"), "decode(encode(text)) == text");
    CHECK(lua_true(L, "MODEL:count(TEXT) == MODEL:count_tokens(TEXT)"), "count is count_tokens");

    /* perplexity */
    t0 = now_s();
    CHECK(lua_true(L,
                   "(function() local r = MODEL:perplexity({'The cat sat on the mat and looked out of the window at the birds in the garden.',"
                   " 'window garden sat the birds mat the looked on at cat The of and out in the the.'})\n"
                   " FLUENT, SHUFFLED = r[1], r[2]\n"
                   " return r[1] == r[1] and r[1] < math.huge and r[2] < math.huge and r[1] > 1 and r[1] < r[2] end)()"),
          "perplexity finite and fluent < shuffled");
    char *pp = lua_str(L, "string.format('%.3f %.3f', FLUENT, SHUFFLED)");
    printf("perplexity: fluent %s (fluent, shuffled)\n", pp ? pp : "?");
    free(pp);
    CHECK(lua_true(L, "MODEL:perplexity('The cat sat on the mat.') == MODEL:perplexity({'The cat sat on the mat.'})[1]"),
          "perplexity of a string = of a one-item list");
    double t_ppl = now_s() - t0;

    /* the generator plugins */
    char dir[] = "/tmp/opt_bind_model.XXXXXX";
    REQUIRE(mkdtemp(dir), "mkdtemp");
    char seeds[600];
    snprintf(seeds, sizeof seeds, "%s/seeds.jsonl", dir);
    FILE *f = fopen(seeds, "w");
    REQUIRE(f, "%s", seeds);
    fputs("{\"instruction\": \"Give three tips for staying healthy.\", \"output\": \"Eat well, sleep, move.\"}\n"
          "{\"instruction\": \"Explain why the sky is blue in two sentences.\"}\n"
          "{\"instruction\": \"Translate \\\"good morning\\\" into Spanish.\", \"input\": \"\"}\n"
          "{\"instruction\": \"Write a short poem about the sea.\"}\n"
          "\n"
          "{\"instruction\": \"List five fruits that are rich in vitamin C.\"}\n"
          "{\"instruction\": \"Summarize the plot of Romeo and Juliet in one paragraph.\"}\n"
          "{\"instruction\": \"Suggest a name for a coffee shop near a university.\"}\n"
          "{\"instruction\": \"Describe how to make a cup of green tea.\"}\n", f);
    fclose(f);
    lua_pushstring(L, seeds);
    lua_setglobal(L, "SEEDS");
    load_plugin(L, "self_instruct.lua");
    load_plugin(L, "persona.lua");
    load_plugin(L, "distill.lua");
    load_plugin(L, "evol_instruct.lua");
    load_plugin(L, "perplexity.lua");
    load_plugin(L, "judge.lua");

    t0 = now_s();
    int ok = run_lua(L,
                     "SI1 = run_stage('generate', 'self_instruct', {seeds = SEEDS, n = 2, max_tokens = 32, few_shot = 4, batch = 6}, {}, 11)\n",
                     "=self_instruct");
    double t_si = now_s() - t0;
    CHECK(ok == 0, "self_instruct ran");
    if (!ok) {
        CHECK(lua_true(L, "#SI1 == 2"), "self_instruct: 2 samples");
        CHECK(lua_true(L,
                       "(function() for i, s in ipairs(SI1) do if s._prov.generator ~= 'self_instruct' or s._prov.seed ~= 11"
                       " or s._prov.index ~= i or #s.messages ~= 2 or s.messages[1].role ~= 'user' or s.messages[2].role ~= 'assistant'"
                       " or s.messages[2].content == '' then return false end end return true end)()"),
              "self_instruct: samples are user/assistant pairs with provenance");
        char *ex = lua_str(L, "SI1[1] and SI1[1].messages[1].content or ''");
        printf("self_instruct sample 1: %s\n", ex ? ex : "?");
        free(ex);
        CHECK(lua_true(L,
                       "(function() local pl = require 'potluck'; for i = 1, #SI1 do for j = 1, #SI1 do if i ~= j and"
                       " pl.rouge_l(SI1[i].messages[1].content, SI1[j].messages[1].content) >= 0.7 then return false end end end"
                       " return true end)()"),
              "self_instruct: the new instructions are novel to each other");
    }

    t0 = now_s();
    ok = run_lua(L,
                 "PERS = {personas = {'a retired sailor', 'a first-year chemistry student', 'a bakery owner'},"
                 " tasks = {'Write a question that {persona} might ask an AI assistant. Reply with the question only.',"
                 " 'Write a short request that {persona} might give an AI assistant. Reply with the request only.'},"
                 " n = 3, max_tokens = 32}\n"
                 "PE1 = run_stage('generate', 'persona', PERS, {{text = 'passed through'}}, 5)\n",
                 "=persona");
    double t_pe = now_s() - t0;
    CHECK(ok == 0, "persona ran");
    if (!ok) {
        CHECK(lua_true(L, "#PE1 == 4 and PE1[1].text == 'passed through'"), "persona: input passed + 3 samples");
        CHECK(lua_true(L,
                       "(function() for i = 2, 4 do local s = PE1[i]; if s._prov.generator ~= 'persona' or s._prov.index ~= i - 1"
                       " or not s._prov.persona or #s.messages ~= 2 or s.messages[2].content == '' then return false end end"
                       " return true end)()"),
              "persona: samples with provenance");
    }

    t0 = now_s();
    ok = run_lua(L,
                 "DI = run_stage('generate', 'distill', {max_tokens = 32, temperature = 0},"
                 " {{messages = {{role = 'user', content = 'What is the capital of France?'}}, _prov = {source = 'a.jsonl:1'}},"
                 "  {messages = {{role = 'user', content = 'Name a prime number.'}, {role = 'assistant', content = 'OLD'}}}}, 3)\n",
                 "=distill");
    double t_di = now_s() - t0;
    CHECK(ok == 0, "distill ran");
    if (!ok) {
        CHECK(lua_true(L, "#DI == 2"), "distill: 2 samples");
        CHECK(lua_true(L,
                       "#DI[1].messages == 2 and DI[1].messages[2].role == 'assistant' and #DI[1].messages[2].content > 0"
                       " and DI[1]._prov.source == 'a.jsonl:1' and DI[1]._prov.teacher == 'base'"),
              "distill: assistant turn added, provenance kept");
        CHECK(lua_true(L, "#DI[2].messages == 2 and DI[2].messages[2].content ~= 'OLD' and #DI[2].messages[2].content > 0"),
              "distill: assistant turn replaced");
        /* temperature 0: the teacher's answer is the greedy chat continuation */
        CHECK(lua_true(L,
                       "DI[1].messages[2].content == MODEL:generate({{{role = 'user', content = 'What is the capital of France?'}}},"
                       " {temperature = 0, max_tokens = 32})[1]:gsub('^%s+', ''):gsub('%s+$', '')"),
              "distill: answer = greedy generation");
    }

    t0 = now_s();
    ok = run_lua(L,
                 "EV = run_stage('generate', 'evol_instruct', {rounds = 1, max_tokens = 32, kinds = {'reasoning'}},"
                 " {{messages = {{role = 'user', content = 'Give three tips for staying healthy.'}, {role = 'assistant', content = 'Sleep.'}}},"
                 "  {messages = {{role = 'user', content = 'Explain what a prime number is.'}}}}, 9)\n"
                 "EV2 = run_stage('generate', 'evol_instruct', {rounds = 1, max_tokens = 32, kinds = {'reasoning'}},"
                 " {{messages = {{role = 'user', content = 'Give three tips for staying healthy.'}, {role = 'assistant', content = 'Sleep.'}}},"
                 "  {messages = {{role = 'user', content = 'Explain what a prime number is.'}}}}, 9)\n",
                 "=evol_instruct");
    double t_ev = now_s() - t0;
    CHECK(ok == 0, "evol_instruct ran");
    if (!ok) {
        CHECK(lua_true(L, "#EV >= 2 and EV[1].messages[2].content == 'Sleep.' and ser(EV) == ser(EV2)"),
              "evol_instruct: originals passed through, deterministic");
        /* input order: each input, then its kept evolutions (the lineage of a part is what one process writes) */
        CHECK(lua_true(L,
                       "(function() local cur = 0; for i = 1, #EV do local p = EV[i]._prov"
                       " if not (p and p.generator == 'evol_instruct') then cur = cur + 1"
                       " elseif p.seed ~= 9 or p.parent ~= cur or not p.evolution or p.round ~= 1 or p.parent_round ~= nil"
                       " or #EV[i].messages ~= 2 then return false end end return cur == 2 and #EV > 2 end)()"),
              "evol_instruct: at least one evolution kept; provenance, each after its input");
        char *nev = lua_str(L, "(function() for i = 1, #EV do local p = EV[i]._prov; if p and p.generator == 'evol_instruct'"
                               " then return tostring(#EV - 2) .. ' evolutions; ' .. p.evolution .. ': ' .."
                               " EV[i].messages[1].content end end return '0 evolutions' end)()");
        printf("evol_instruct: %s\n", nev ? nev : "?");
        free(nev);
    }

    /* the perplexity and judge filters */
    t0 = now_s();
    ok = run_lua(L,
                 "PF = run_stage('filter', 'perplexity', {max_ppl = (FLUENT + SHUFFLED) / 2},"
                 " {{text = 'The cat sat on the mat and looked out of the window at the birds in the garden.'},"
                 "  {text = 'window garden sat the birds mat the looked on at cat The of and out in the the.'}}, 1)\n"
                 "-- pattern '()' captures position 1 whatever the judge says: score 1, a model-independent check\n"
                 "JF = run_stage('filter', 'llm_judge', {min_score = 1, max_tokens = 8, pattern = '()'},"
                 " {{messages = {{role = 'user', content = 'Hi'}, {role = 'assistant', content = 'Hello!'}}}}, 1)\n"
                 "JF3 = run_stage('filter', 'llm_judge', {min_score = 2, max_tokens = 8, pattern = '()'},"
                 " {{messages = {{role = 'user', content = 'Hi'}, {role = 'assistant', content = 'Hello!'}}}}, 1)\n"
                 "JF2 = run_stage('filter', 'llm_judge', {min_score = 1, max_tokens = 8, pattern = 'NOSCORE(%d+)',"
                 " unparsable = 'drop'}, {{messages = {{role = 'user', content = 'Hi'}, {role = 'assistant', content = 'Hello!'}}}}, 1)\n",
                 "=filters");
    double t_f = now_s() - t0;
    CHECK(ok == 0, "filters ran");
    if (!ok) {
        CHECK(lua_true(L, "PF[1].keep == true and PF[2].keep == false and PF[2].why:find('perplexity') ~= nil"),
              "perplexity filter keeps the fluent text and drops the shuffled one");
        CHECK(lua_true(L, "JF[1].keep == true"), "llm_judge keeps a sample scored >= 1");
        CHECK(lua_true(L, "JF3[1].keep == false and JF3[1].why:find('score 1 < 2', 1, true) ~= nil"),
              "llm_judge drops a sample scored under min_score");
        char *jw = lua_str(L, "tostring(JF[1].why)");
        printf("llm_judge: %s\n", jw ? jw : "?");
        free(jw);
        CHECK(lua_true(L, "JF2[1].keep == false and JF2[1].why:find('unparsable') ~= nil"), "llm_judge drops an unparsable score");
    }

    for (int i = 1;; i++) { /* log lines the plugins wrote */
        lua_getglobal(L, "LOG");
        lua_rawgeti(L, -1, i);
        const char *s = lua_tostring(L, -1);
        if (s && (strstr(s, "warning") || strstr(s, "round") || strstr(s, "eliminated"))) printf("log: %s\n", s);
        lua_pop(L, 2);
        if (!s) break;
    }
    printf("times (s): greedy %.2f, sampling x6 %.2f, perplexity %.2f, self_instruct %.2f, persona %.2f, distill %.2f,"
           " evol_instruct x2 %.2f, filters %.2f, total %.2f\n",
           t_greedy, t_sampling, t_ppl, t_si, t_pe, t_di, t_ev, t_f, now_s() - t_start);

    lua_close(L);
    unlink(seeds);
    rmdir(dir);
    pl_tokenizer_free(tok);
    pl_model_free(m);
    return check_summary("opt_bind_model");
}
