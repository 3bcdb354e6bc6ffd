-- prelude.lua: the `potluck` module (pl) that recipes and plugins require:
-- plugin registry, step constructors, recipe schema and validation, the
-- stage plan, and the per-stage sample loop. Host code, run by plugins/host.c
-- in the same sandbox as recipes; it receives the host's C primitives as its
-- argument and returns (module, host-only table).
local C = ...
local G = _ENV   -- the sandbox's globals: the base every file's own environment reads through
local base_load, next_, setmetatable_ = load, next, setmetatable

-- Everything the prelude calls at run time is captured here, before any
-- recipe or plugin runs: a recipe that reassigns a global (pairs, error,
-- string.format, ...) cannot reach into the registry or change how steps
-- are validated. (The host gives recipes a copy of the string table; string
-- methods go through the original, which stays out of their reach.)
local pairs, ipairs, next, type, error, pcall, tostring, select = pairs, ipairs, next, type, error, pcall, tostring, select
local setmetatable, rawequal = setmetatable, rawequal
local math = { type = math.type, floor = math.floor, abs = math.abs, min = math.min, max = math.max,
               tointeger = math.tointeger, randomseed = math.randomseed, huge = math.huge }
local string = { format = string.format, sub = string.sub, find = string.find, match = string.match,
                 gsub = string.gsub, byte = string.byte, gmatch = string.gmatch, lower = string.lower }
local utf8 = { len = utf8.len }
local table = { concat = table.concat, sort = table.sort }

local API = 1
local KINDS = { "source", "map", "filter", "generate", "dedup", "decontaminate", "split",
                "scorer", "metric", "template" }
local STEP_KIND = { source = true, map = true, filter = true, generate = true, dedup = true,
                    decontaminate = true, split = true }
local KEEP_KIND = { filter = true, dedup = true, decontaminate = true }

local fmt, concat, sort = string.format, table.concat, table.sort
local registry, order = {}, {}
for _, k in ipairs(KINDS) do registry[k] = {} end
local current_plugin = nil  -- {file = display, sha256 = hex, origin = "built-in"|...}

local H = {}          -- host-only functions (not reachable from recipes)
local pl = {}         -- the module's contents (recipes see a read-only proxy)

---------------------------------------------------------------- helpers
local function shown(v)
  local t = type(v)
  if t == "string" then
    if #v > 60 then v = v:sub(1, 57) .. "..." end
    return fmt("string %q", v):gsub("\\\n", "\\n")
  elseif t == "number" then
    return (math.type(v) == "integer" and "integer " or "number ") .. tostring(v)
  elseif t == "boolean" then return "boolean " .. tostring(v)
  end
  return t
end

local function distance(a, b)
  local la, lb = #a, #b
  if math.abs(la - lb) > 3 then return 99 end
  local prev = {}
  for j = 0, lb do prev[j] = j end
  for i = 1, la do
    local cur = { [0] = i }
    for j = 1, lb do
      local cost = a:byte(i) == b:byte(j) and 0 or 1
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
    end
    prev = cur
  end
  return prev[lb]
end

-- " (did you mean 'x'?)" for the closest candidate within a small distance.
-- Names people bring from other trainers (PEFT, transformers, axolotl) for
-- the keys potluck spells differently: hinted when they are not close.
local SYNONYMS = {
  rank = "r", lora_r = "r", lora_rank = "r", lora_alpha = "alpha", lora_dropout = "dropout",
  target_modules = "targets", learning_rate = "lr", max_steps = "steps", num_steps = "steps",
  batch_size = "batch", micro_batch_size = "batch", per_device_train_batch_size = "batch",
  gradient_accumulation_steps = "grad_accum", max_seq_len = "seq_len", max_length = "seq_len",
  sequence_len = "seq_len", lr_scheduler_type = "schedule", lr_scheduler = "schedule",
  warmup = "warmup_steps", gradient_checkpointing = "checkpointing", model = "base",
  base_model = "base", chat_template = "template",
}

local function hint(word, candidates)
  local syn = SYNONYMS[word]
  if syn then
    for _, c in ipairs(candidates) do if c == syn then return fmt(" (did you mean '%s'?)", syn) end end
  end
  local best, bd = nil, 99
  for _, c in ipairs(candidates) do
    local d = distance(word, c)
    if d < bd or (d == bd and best and c < best) then best, bd = c, d end
  end
  if best and bd <= math.max(2, #word // 3) then return fmt(" (did you mean '%s'?)", best) end
  return ""
end

local function keys_of(t)
  local ks = {}
  for k in pairs(t) do if type(k) == "string" then ks[#ks + 1] = k end end
  sort(ks)
  return ks
end

local function is_list(t)
  if type(t) ~= "table" then return false end
  local n = 0
  for k in pairs(t) do
    if math.type(k) ~= "integer" or k < 1 then return false end
    n = n + 1
  end
  return n == #t
end

---------------------------------------------------------------- value checks
local TYPES = { number = true, integer = true, string = true, boolean = true, list = true,
                table = true, ["function"] = true, file = true, files = true, table_or_function = true }

-- Check one value against a parameter spec; returns the value to use.
local function check_value(name, s, v)
  local t = s.type
  if t == "number" then
    if type(v) ~= "number" then error(fmt("%s: expected a number, got %s", name, shown(v)), 0) end
  elseif t == "integer" then
    if math.type(v) == "float" and v == math.floor(v) and v > -2^53 and v < 2^53 then v = math.tointeger(v) end
    if math.type(v) ~= "integer" then error(fmt("%s: expected an integer, got %s", name, shown(v)), 0) end
  elseif t == "string" then
    if type(v) ~= "string" then error(fmt("%s: expected a string, got %s", name, shown(v)), 0) end
  elseif t == "boolean" then
    if type(v) ~= "boolean" then error(fmt("%s: expected a boolean, got %s", name, shown(v)), 0) end
  elseif t == "list" then
    if type(v) == "string" or type(v) == "number" then v = { v } end
    if not is_list(v) then error(fmt("%s: expected a list, got %s", name, shown(v)), 0) end
    for i, x in ipairs(v) do
      if type(x) ~= "string" and type(x) ~= "number" then
        error(fmt("%s[%d]: expected a string or number, got %s", name, i, shown(x)), 0)
      end
    end
  elseif t == "table" then
    if type(v) ~= "table" then error(fmt("%s: expected a table, got %s", name, shown(v)), 0) end
  elseif t == "function" then
    if type(v) ~= "function" then error(fmt("%s: expected a function, got %s", name, shown(v)), 0) end
  elseif t == "table_or_function" then
    if type(v) ~= "table" and type(v) ~= "function" then
      error(fmt("%s: expected a table or a function, got %s", name, shown(v)), 0)
    end
  elseif t == "file" then
    if type(v) ~= "string" then error(fmt("%s: expected a file path, got %s", name, shown(v)), 0) end
    v = C.resolve(v, name)
  elseif t == "files" then
    if type(v) == "string" then v = { v } end
    if not is_list(v) or #v == 0 then error(fmt("%s: expected a list of file paths, got %s", name, shown(v)), 0) end
    local out = {}
    for i, x in ipairs(v) do
      if type(x) ~= "string" then error(fmt("%s[%d]: expected a file path, got %s", name, i, shown(x)), 0) end
      out[i] = C.resolve(x, fmt("%s[%d]", name, i))
    end
    v = out
  end
  if type(v) == "number" then
    if s.min and v < s.min then error(fmt("%s: %s is below the minimum %s", name, tostring(v), tostring(s.min)), 0) end
    if s.max and v > s.max then error(fmt("%s: %s is above the maximum %s", name, tostring(v), tostring(s.max)), 0) end
  end
  if s.aliases and type(v) == "string" and s.aliases[v] then v = s.aliases[v] end
  if s.choices then
    local vals = type(v) == "table" and v or { v }
    for _, x in ipairs(vals) do
      local ok = false
      for _, c in ipairs(s.choices) do if c == x then ok = true end end
      if not ok then
        local cs = {}
        for i, c in ipairs(s.choices) do cs[i] = tostring(c) end
        error(fmt("%s: %s is not one of %s%s", name, shown(x), concat(cs, ", "),
                  type(x) == "string" and hint(x, cs) or ""), 0)
      end
    end
  end
  return v
end

-- Check a table against a schema {key = spec}; returns a new table with
-- defaults filled. where prefixes messages ("train", "filter.length").
local function check_table(where, schema, t)
  if type(t) ~= "table" then error(fmt("%s: expected a table, got %s", where, shown(t)), 0) end
  local names = keys_of(schema)
  for k in pairs(t) do
    if type(k) ~= "string" then
      error(fmt("%s: unexpected positional value %s (parameters are name = value)", where, shown(t[k])), 0)
    end
    if not schema[k] then
      error(fmt("%sunknown key '%s'%s", where ~= "" and where .. ": " or "", k, hint(k, names)), 0)
    end
  end
  local out = {}
  for _, k in ipairs(names) do
    local s, v = schema[k], t[k]
    local name = where ~= "" and (where .. "." .. k) or k
    if v == nil then
      if s.required then error(fmt("%s: required, missing", name), 0) end
      v = s.default
      if type(v) == "table" then local c = {} for i, x in pairs(v) do c[i] = x end v = c end
    else
      v = check_value(name, s, v)
    end
    out[k] = v
  end
  return out
end

---------------------------------------------------------------- registry
function pl.register(spec)
  if type(spec) ~= "table" then error("pl.register: expected a table", 2) end
  local where = "pl.register"
  if type(spec.name) ~= "string" or not spec.name:match("^[%a_][%w_]*$") then
    error(where .. ": name: expected an identifier, got " .. shown(spec.name), 2)
  end
  where = where .. " '" .. spec.name .. "'"
  if math.type(spec.api) ~= "integer" then error(where .. ": api: expected the plugin API version (an integer)", 2) end
  if spec.api > API then
    error(fmt("%s: written for plugin API %d; this potluck has API %d", where, spec.api, API), 2)
  end
  if type(spec.kind) ~= "string" or not registry[spec.kind] then
    error(fmt("%s: kind: expected one of %s, got %s%s", where, concat(KINDS, ", "), shown(spec.kind),
              type(spec.kind) == "string" and hint(spec.kind, KINDS) or ""), 2)
  end
  local allowed = { api = 1, kind = 1, name = 1, doc = 1, params = 1, each = 1, stream = 1, score = 1, measure = 1,
                    jinja = 1, shard = 1 }
  for k in pairs(spec) do
    if not allowed[k] then error(fmt("%s: unknown field '%s'%s", where, tostring(k), hint(tostring(k), keys_of(allowed))), 2) end
  end
  local params = spec.params or {}
  if type(params) ~= "table" then error(where .. ": params: expected a table", 2) end
  for k, s in pairs(params) do
    if type(k) ~= "string" or type(s) ~= "table" or not TYPES[s.type] then
      error(fmt("%s: params.%s: expected {type = <%s>, ...}", where, tostring(k), concat(keys_of(TYPES), "|")), 2)
    end
  end
  local k = spec.kind
  if STEP_KIND[k] then
    local want = (k == "source" or k == "generate") and "stream" or "each"
    if type(spec.each) ~= "function" and type(spec.stream) ~= "function" then
      error(fmt("%s: a %s plugin needs %s = function(...)", where, k, want), 2)
    end
    if k == "map" and type(spec.each) ~= "function" then error(where .. ": a map plugin needs each = function(p, ctx)", 2) end
    -- shard = "sample": what the plugin makes of a sample depends on that
    -- sample and its index only, so ranks may split the input by index
    -- (docs/distributed.md); an each plugin then sees its part (ctx.offset:
    -- the index of its first sample), a stream plugin sees every input and
    -- emits for those of ctx.part = {lo, hi} only (0-based, hi excluded).
    -- shard = "calls": the plugin makes the same model calls on every rank
    -- (its choices depend on its input, its parameters, ctx.seed and what
    -- the model answered, nothing else), so every rank runs all of it and
    -- each m:generate is split by prompt index, the answers shared.
    if spec.shard ~= nil and spec.shard ~= "sample" and spec.shard ~= "calls" then
      error(fmt("%s: shard: expected \"sample\", \"calls\" or nothing, got %s", where, shown(spec.shard)), 2)
    end
  elseif k == "scorer" and type(spec.score) ~= "function" then
    error(where .. ": a scorer plugin needs score = function(p, ctx) returning function(sample) -> number", 2)
  elseif k == "metric" and type(spec.measure) ~= "function" then
    error(where .. ": a metric plugin needs measure = function(p, ctx, samples) -> number or table", 2)
  elseif k == "template" and type(spec.jinja) ~= "string" then
    error(where .. ": a template plugin needs jinja = \"<a Jinja chat template>\"", 2)
  end
  local prev = registry[k][spec.name]
  if prev then
    error(fmt("%s: a %s plugin named '%s' is already registered by %s", where, k, spec.name, prev.file), 2)
  end
  local rec = {}
  for kk, v in pairs(spec) do rec[kk] = v end
  rec.params = params
  rec.doc = type(spec.doc) == "string" and spec.doc or ""
  rec.file = current_plugin and current_plugin.file or "?"
  rec.sha256 = current_plugin and current_plugin.sha256 or ""
  rec.origin = current_plugin and current_plugin.origin or "recipe"
  registry[k][spec.name] = rec
  order[#order + 1] = rec
end

---------------------------------------------------------------- steps
local function make_step(kind, name, params)
  local spec = registry[kind][name]
  if not spec then
    error(fmt("pl.%s.%s: no %s plugin named '%s'%s", kind, name, kind, name, hint(name, keys_of(registry[kind]))), 3)
  end
  if params == nil then params = {} end
  local ok, res = pcall(check_table, kind .. "." .. name, spec.params, params)
  if not ok then error(res, 3) end
  return { _step = true, kind = kind, name = name, params = res }
end

local function step_family(kind, fn_param)
  local fam = {}
  return setmetatable(fam, {
    __index = function(_, name)
      if type(name) ~= "string" then return nil end
      return function(params)
        local st = make_step(kind, name, params) -- not a tail call: errors name the recipe line
        return st
      end
    end,
    __call = function(_, arg)
      if fn_param then
        if type(arg) ~= "function" then
          error(fmt("pl.%s: expected a function, got %s", kind, shown(arg)), 2)
        end
        local st = make_step(kind, "lua", { fn = arg })
        return st
      end
      if kind ~= "split" then
        error(fmt("pl.%s is a family of steps: write pl.%s.<name>{...} (see potluck plugins list)", kind, kind), 2)
      end
      local st = make_step(kind, "hash", arg)
      return st
    end,
    __newindex = function() error("pl." .. kind .. " is read-only", 2) end,
    __metatable = "locked",
  })
end

pl.source = step_family("source", false)
pl.map = step_family("map", true)
pl.filter = step_family("filter", true)
pl.generate = step_family("generate", true)
pl.dedup = step_family("dedup", false)
pl.decontaminate = step_family("decontaminate", false)
pl.split = step_family("split", false)

function pl.pipeline(steps)
  if type(steps) ~= "table" or not is_list(steps) then
    error("pl.pipeline: expected a list of steps {pl.source.jsonl{...}, pl.filter.length{...}, ...}", 2)
  end
  for i, s in ipairs(steps) do
    if type(s) ~= "table" or not s._step then
      error(fmt("pl.pipeline: item %d: expected a step such as pl.filter.length{...}, got %s", i, shown(s)), 2)
    end
  end
  if #steps == 0 then error("pl.pipeline: no steps", 2) end
  local copy = {}
  for i, s in ipairs(steps) do copy[i] = s end
  return { _pipeline = true, steps = copy }
end

-- pl.text and the other text helpers are set by plugins/bind_text.c.
pl.api = API
pl.null = C.null

---------------------------------------------------------------- files
pl.read_file = C.read_file
pl.file_exists = C.exists
pl.write_file = C.write_file
pl.lines = C.lines
pl.json_decode = C.json_decode
pl.json_encode = C.json_encode

---------------------------------------------------------------- recipe schema
local SECTION = { type = "table" }
local RECIPE = {
  name = { type = "string", required = true },
  description = { type = "string" },
  license = { type = "string" },
  seed = { type = "integer", default = 42, min = 0 },
  base = { type = "string" },
  teacher = { type = "string" },
  template = { type = "string" },
  mask = { type = "string", default = "assistant", choices = { "assistant", "all", "last-assistant" },
           aliases = { last = "last-assistant" } },
  data = { type = "table", required = true },
  lora = SECTION, train = SECTION, eval = SECTION, export = SECTION, shard = SECTION, scale = { type = "table_or_function" },
}
local EVAL = {
  every = { type = "integer", default = 0, min = 0 },
  rows = { type = "integer", default = 64, min = 1 },
  metrics = { type = "list", default = {}, doc = "metric plugins run over the held-out samples" },
  tasks = { type = "list", default = {},
    doc = "multiple-choice task files (lm-eval JSONL or llama.cpp HellaSwag text, relative to the recipe) "
       .. "scored on the base and the fine-tune (docs/eval.md)" },
  limit = { type = "integer", default = 0, min = 0, doc = "items per task (0: all), the same items every run" },
  answers = { type = "integer", default = 3, min = 0, max = 64,
    doc = "held-out prompts answered by the base and by the fine-tune, side by side in results.json and the report" },
  answer_tokens = { type = "integer", default = 96, min = 1, max = 4096, doc = "most tokens of each of those answers (greedy)" },
}
local EXPORT = {
  formats = { type = "list", default = { "peft" }, choices = { "peft", "merged", "gguf" } },
  gguf_type = { type = "string", default = "f16",
    choices = { "f32", "f16", "bf16", "q8_0", "q6_k", "q5_k_m", "q5_k_s", "q5_1", "q5_0", "q4_k_m", "q4_k_s", "q4_1", "q4_0" } },
  dtype = { type = "string", default = "f32", choices = { "f32", "bf16" } },
  kl = { type = "boolean", default = true,
    doc = "with gguf: the GGUF's per-token KL divergence from the merged model on the run's samples, in results.json" },
}
local SHARD = {
  shard_tokens = { type = "integer", default = 1 << 24, min = 1 },
  store_text = { type = "boolean", default = true },
}
local SCALE = { base = { type = "string" }, teacher = { type = "string" }, notes = { type = "string" },
                lora = SECTION, train = SECTION, eval = SECTION, export = SECTION }
local TRAIN_HOST_KEYS = { seed = "seed (set it at the top of the recipe)", eval_every = "eval.every",
                          eval_rows = "eval.rows", threads = "--threads / OMP_NUM_THREADS" }

-- lora/train are checked by the trainer's own configuration code (C).
local function check_lora_train(where, lora, train)
  if train then
    for k, use in pairs(TRAIN_HOST_KEYS) do
      if train[k] ~= nil then error(fmt("%strain.%s: set by the host; use %s", where, k, use), 0) end
    end
  end
  local msg = C.check_train(lora or {}, train or {})
  if msg then error(where .. msg, 0) end
end

function pl.recipe(t)
  local ok, r = pcall(check_table, "", RECIPE, t)
  if not ok then error(r, 2) end
  if type(r.data) ~= "table" or not r.data._pipeline then
    error("data: expected pl.pipeline{...}", 2)
  end
  ok, r.eval = pcall(check_table, "eval", EVAL, r.eval or {})
  if not ok then error(r.eval, 2) end
  ok, r.export = pcall(check_table, "export", EXPORT, r.export or {})
  if not ok then error(r.export, 2) end
  ok, r.shard = pcall(check_table, "shard", SHARD, r.shard or {})
  if not ok then error(r.shard, 2) end
  local e
  ok, e = pcall(check_lora_train, "", r.lora, r.train)
  if not ok then error(e, 2) end
  if type(r.scale) == "function" then
    -- a function(size, recipe) returning the overrides for a size: checked when --size calls it
  elseif r.scale then
    if type(r.scale) ~= "table" then error("scale: expected a table of sizes or a function(size, recipe)", 2) end
    for size, over in pairs(r.scale) do
      if type(size) ~= "string" then error("scale: keys are size names such as [\"13b\"]", 2) end
      local where = fmt("scale[%q]", size)
      ok, e = pcall(check_table, where, SCALE, over)
      if not ok then error(e, 2) end
      local lo, tr = {}, {}
      for k, v in pairs(r.lora or {}) do lo[k] = v end
      for k, v in pairs(over.lora or {}) do lo[k] = v end
      for k, v in pairs(r.train or {}) do tr[k] = v end
      for k, v in pairs(over.train or {}) do tr[k] = v end
      ok, e = pcall(check_lora_train, where .. ".", lo, tr)
      if not ok then error(e, 2) end
      if over.eval then ok, e = pcall(check_table, where .. ".eval", EVAL, over.eval) if not ok then error(e, 2) end end
      if over.export then ok, e = pcall(check_table, where .. ".export", EXPORT, over.export) if not ok then error(e, 2) end end
    end
  end
  r._recipe = true
  return r
end

---------------------------------------------------------------- host side
-- Every plugin file, required module and recipe runs in an environment of
-- its own: globals it assigns stay there, it gets its own copies of the
-- library tables (so `table.concat = f` or `pairs = f` in a recipe changes
-- nothing for the plugins), `_G` is that environment, and `load` defaults to
-- it. The shared base table behind them is out of reach (locked metatable,
-- no debug library).
local LIBS = { "string", "table", "math", "utf8", "coroutine" }
function H.new_env()
  local env = {}
  for _, lib in ipairs(LIBS) do
    local c = {}
    for k, v in next_, G[lib] do c[k] = v end
    env[lib] = c
  end
  env._G = env
  env.load = function(chunk, name, mode, e)
    if e == nil then e = env end
    return base_load(chunk, name, mode, e)
  end
  return setmetatable_(env, { __index = G, __metatable = "locked" })
end

function H.begin_plugin(file, sha, origin) current_plugin = { file = file, sha256 = sha, origin = origin } end
function H.end_plugin() current_plugin = { file = "recipe", sha256 = "", origin = "recipe" } end

function H.plugins()
  local out = {}
  for _, r in ipairs(order) do
    local ps = {}
    for _, k in ipairs(keys_of(r.params)) do
      local s = r.params[k]
      local d = s.default
      if type(d) == "table" then d = C.json_encode(d) end
      ps[#ps + 1] = { name = k, type = s.type, default = d ~= nil and tostring(d) or nil,
                      required = s.required or nil, doc = s.doc,
                      choices = s.choices and concat((function() local c = {} for i, x in ipairs(s.choices) do c[i] = tostring(x) end return c end)(), ", ") or nil }
    end
    out[#out + 1] = { kind = r.kind, name = r.name, doc = r.doc, file = r.file, origin = r.origin,
                      sha256 = r.sha256, params = ps }
  end
  return out
end

-- Billions of parameters a size name stands for ("13b", "33B", "7b-chat", "1.5b"), or nil.
local function size_billions(size)
  local n = tonumber(size:lower():match("^(%d+%.?%d*)b"))
  return n
end

-- The QLoRA paper's settings for a size without a scale entry (Dettmers et al.
-- 2023, Table 9: lr 2e-4 and dropout 0.1 up to 13B, lr 1e-4 and dropout 0.05
-- for 33B and 65B; the global batch is kept), relative to the recipe's own.
local function paper_defaults(r, size)
  local b = size_billions(size)
  if not b then
    local sizes = type(r.scale) == "table" and keys_of(r.scale) or {}
    error(fmt("--size %s: the recipe has no scale[%q] (sizes: %s)%s, and '%s' is not a size such as 7b, 13b or 33b",
              size, size, #sizes > 0 and concat(sizes, ", ") or "none", hint(size, sizes), size), 0)
  end
  local over = { lora = {}, train = {} }
  if b >= 30 then
    over.train.lr = (r.train and r.train.lr or 2e-4) / 2
    over.lora.dropout = 0.05
    over.notes = fmt("no scale[%q] in the recipe: the QLoRA paper's settings from 33B (lr halved to %g, lora dropout "
                     .. "0.05, global batch kept)", size, over.train.lr)
  else
    over.notes = fmt("no scale[%q] in the recipe: the QLoRA paper keeps 7B/13B settings (the recipe's own)", size)
  end
  return over
end

-- The recipe with a size's overrides applied (a copy): its scale[size] entry,
-- what its scale function returns for the size, or the QLoRA paper's defaults.
local function sized(r, size)
  if not size then return r end
  local over
  if type(r.scale) == "function" then
    local ok, res = pcall(r.scale, size, r)
    if not ok then error(fmt("scale(%q): %s", size, tostring(res)), 0) end
    if res ~= nil and type(res) ~= "table" then
      error(fmt("scale(%q): expected a table of overrides (lora, train, eval, export, base, notes) or nil, got %s",
                size, type(res)), 0)
    end
    over = res
    if over then
      local where = fmt("scale(%q)", size)
      local ok2, e = pcall(check_table, where, SCALE, over)
      if not ok2 then error(e, 0) end
      local lo, tr = {}, {}
      for k, v in pairs(r.lora or {}) do lo[k] = v end
      for k, v in pairs(over.lora or {}) do lo[k] = v end
      for k, v in pairs(r.train or {}) do tr[k] = v end
      for k, v in pairs(over.train or {}) do tr[k] = v end
      ok2, e = pcall(check_lora_train, where .. ".", lo, tr)
      if not ok2 then error(e, 0) end
    end
  else
    over = r.scale and r.scale[size]
  end
  if not over then over = paper_defaults(r, size) end
  local c = {}
  for k, v in pairs(r) do c[k] = v end
  for _, sec in ipairs({ "lora", "train", "eval", "export" }) do
    local m = {}
    for k, v in pairs(r[sec] or {}) do m[k] = v end
    for k, v in pairs(over[sec] or {}) do m[k] = v end
    c[sec] = m
  end
  if over.base then c.base = over.base end
  if over.teacher then c.teacher = over.teacher end
  c.size = size
  c.size_notes = over.notes
  return c
end

local function describe(v, depth)
  depth = depth or 0
  local t = type(v)
  if t == "function" then return C.func_where(v) end
  if t ~= "table" then return v end
  if depth > 8 then return "<deep table>" end
  local o = {}
  for k, x in pairs(v) do
    if type(k) == "string" or math.type(k) == "integer" then o[k] = describe(x, depth + 1) end
  end
  return o
end

-- sha256 of every file a step's file/files parameters name (the cache key
-- follows the files' contents, not their names).
local function file_hashes(spec, params)
  local out = {}
  for k, s in pairs(spec.params) do
    local v = params[k]
    if v ~= nil and s.type == "file" then out[k] = C.file_sha256(v)
    elseif v ~= nil and s.type == "files" then
      local l = {}
      for i, f in ipairs(v) do l[i] = C.file_sha256(f) end
      out[k] = l
    end
  end
  return out
end

-- Parameters with file paths shown relative to the recipe (the key must not
-- change when the recipe's folder moves; the files' contents are hashed).
local function portable(spec, params)
  local out = {}
  for k, v in pairs(params) do
    local s = spec.params[k]
    if s and s.type == "file" then out[k] = C.display(v)
    elseif s and s.type == "files" then
      local l = {}
      for i, f in ipairs(v) do l[i] = C.display(f) end
      out[k] = l
    else out[k] = v end
  end
  return out
end

function H.plan(r, size)
  if type(r) ~= "table" or not r._recipe then
    error("the recipe file must return pl.recipe{...}", 0)
  end
  r = sized(r, size)
  local steps = {}
  local counts = {}
  for i, st in ipairs(r.data.steps) do
    local spec = registry[st.kind][st.name]
    counts[st.kind] = (counts[st.kind] or 0) + 1
    steps[i] = {
      index = i, kind = st.kind, name = st.name,
      label = fmt("%02d-%s.%s", i, st.kind, st.name),
      plugin = spec.file, plugin_sha256 = spec.sha256, plugin_origin = spec.origin, shard = spec.shard,
      hash = C.hash({ api = API, kind = st.kind, name = st.name, params = portable(spec, st.params), plugin = spec.sha256,
                      files = file_hashes(spec, st.params) }),
      params = describe(portable(spec, st.params)),
    }
  end
  local sizes = type(r.scale) == "table" and keys_of(r.scale) or {}
  local template_source = nil
  if r.template and registry.template[r.template] then template_source = registry.template[r.template].jinja end
  for i, m in ipairs(r.eval.metrics or {}) do
    if not registry.metric[m] then
      error(fmt("eval.metrics[%d]: no metric plugin named '%s'%s", i, tostring(m), hint(tostring(m), keys_of(registry.metric))), 0)
    end
  end
  return {
    template_source = template_source,
    name = r.name, description = r.description, license = r.license, seed = r.seed,
    base = r.base, teacher = r.teacher, template = r.template, mask = r.mask,
    size = r.size, size_notes = r.size_notes, sizes = sizes,
    lora = r.lora or {}, train = r.train or {}, eval = r.eval, export = r.export, shard = r.shard,
    steps = steps,
  }
end

local function check_sample(label, s)
  if type(s) ~= "table" then error(fmt("%s: a sample must be a table, got %s", label, shown(s)), 0) end
  if s.messages == nil and type(s.text) ~= "string" then
    error(label .. ": a sample needs messages = {{role = ..., content = ...}, ...} or text = \"...\"", 0)
  end
  if s.messages ~= nil then
    if not is_list(s.messages) or #s.messages == 0 then error(label .. ": messages: expected a non-empty list", 0) end
    for i, m in ipairs(s.messages) do
      if type(m) ~= "table" or type(m.role) ~= "string" or type(m.content) ~= "string" then
        error(fmt("%s: messages[%d]: expected {role = \"...\", content = \"...\"}", label, i), 0)
      end
    end
  end
end

-- Run step i over the samples of io.input (nil for the first stage) into
-- io.output. Returns the stage's counts.
function H.run_stage(r, size, i, io)
  r = sized(r, size)
  local st = r.data.steps[i]
  local spec = registry[st.kind][st.name]
  local label = fmt("%02d-%s.%s", i, st.kind, st.name)
  local ctx = { seed = io.seed, stage = label, log = function(msg) C.log(label, tostring(msg)) end,
                model = function() return C.model("base") end,
                load_model = function(which) return C.model(which) end,
                tokenizer = function() return C.model("base") end,
                offset = 0, decision = io.decision }
  -- one rank's part of the input (docs/distributed.md, "Sharded data work")
  local part = io.lo and { lo = io.lo, hi = io.hi } or nil
  if part and spec.shard ~= "sample" then error(label .. ": this stage cannot be split by sample", 0) end
  if part and spec.each then ctx.offset = part.lo end
  if part and spec.stream then ctx.part = part end
  math.randomseed(io.seed)
  local input = io.input and (part and spec.each and C.reader(io.input, part.lo, part.hi) or C.reader(io.input))
                or function() return nil end
  local w = C.writer(io.output)
  -- every removed sample, with its provenance and the filter's reason
  local rw = KEEP_KIND[st.kind] and C.writer((io.output:gsub("out%.jsonl$", "removed.jsonl"))) or nil
  local n_in, n_out, removed, examples, varied = 0, 0, {}, {}, {}
  -- the progress line (core/progress.h, on stderr): per-sample stages count
  -- their input against the previous stage's output; generators and sources
  -- count the samples they add (not the input they pass through), against
  -- their n when they have one
  local passed, n_passed = setmetatable_({}, { __mode = "k" }), 0
  local n_read = 0 -- a stream plugin on a part reads every input; its part's count as input
  local function counted_input()
    local s = input()
    if s then
      n_read = n_read + 1
      if not (part and spec.stream) or (n_read > part.lo and n_read <= part.hi) then n_in = n_in + 1 end
      if type(s) == "table" then passed[s] = true end
    end
    return s
  end
  local n_new = st.kind == "generate" and math.type(st.params.n) == "integer" and st.params.n or 0
  C.progress_begin(label, spec.each and (io.total or 0) or n_new, "samples")
  if spec.each then
    local fn = spec.each(st.params, ctx)
    if type(fn) ~= "function" then error(label .. ": each(p, ctx) must return a function", 0) end
    local keep_kind = KEEP_KIND[st.kind]
    for s in counted_input do
      local prov = s._prov
      if st.kind == "map" then
        local res = fn(s)
        if res == nil then res = s end
        check_sample(label, res)
        if res._prov == nil then res._prov = prov end
        w:write(res)
        n_out = n_out + 1
      elseif st.kind == "split" then
        local res = fn(s)
        w:write(res or s)
        n_out = n_out + 1
      else
        local keep, reason = fn(s)
        if keep then
          if keep_kind and type(prov) == "table" then
            local f = prov.filters or {}
            f[#f + 1] = st.kind .. "." .. st.name
            prov.filters = f
          end
          w:write(s)
          n_out = n_out + 1
        else
          reason = type(reason) == "string" and reason or "removed"
          if rw then rw:write({ reason = reason, _prov = prov }) end
          -- counted by the reason's shape: numbers and quoted text left out
          local class = reason:gsub('%b""', '""'):gsub("%d[%d%.e+-]*", "N")
          removed[class] = (removed[class] or 0) + 1
          -- the first reason of each shape is kept as said, numbers and all
          if examples[class] == nil then examples[class] = reason
          elseif examples[class] ~= reason then varied[class] = true end
        end
      end
      C.progress(n_in, keep_kind and n_out or nil)
    end
  else
    local index = 0   -- 1-based, as the built-in generators number their samples
    local function emit(s)
      check_sample(label, s)
      index = index + 1
      if type(s._prov) ~= "table" then
        s._prov = { generator = st.kind .. "." .. st.name, seed = io.seed, index = index }
      end
      s._prov.stage = s._prov.stage or label
      w:write(s)
      n_out = n_out + 1
      if passed[s] then n_passed = n_passed + 1 end
      C.progress(n_out - n_passed)
    end
    spec.stream(st.params, ctx, function() return counted_input end, emit)
  end
  w:close()
  if rw then rw:close() end
  C.progress_end()
  local n_removed = 0
  for _, c in pairs(removed) do n_removed = n_removed + c end
  local ex = {}
  for class, r in pairs(examples) do ex[class] = { reason = r, varied = varied[class] == true } end
  return { input = n_in, output = n_out, removed = n_removed, reasons = removed, examples = ex }
end

-- The eval section's metric plugins over the samples of path (the held-out
-- split); returns {name = value}.
function H.run_metrics(r, size, path, seed)
  r = sized(r, size)
  local samples = {}
  for s in C.reader(path) do samples[#samples + 1] = s end
  local out = {}
  local names = r.eval.metrics or {}
  if #names > 0 then C.progress_begin("eval metrics", #names, "metrics") end
  for k, name in ipairs(names) do
    local spec = registry.metric[name]
    -- ctx.model(): the model under evaluation, the fine-tune when training
    -- left an adapter; ctx.load_model("base") is the base for comparisons
    local function tuned_or_base()
      local ok, m = pcall(C.model, "tuned")
      if ok then return m end
      return C.model("base")
    end
    local ctx = { seed = seed, stage = "eval", log = function(msg) C.log("eval", tostring(msg)) end,
                  model = tuned_or_base,
                  load_model = function(which) return C.model(which) end,
                  tokenizer = function() return C.model("base") end }
    math.randomseed(seed)
    local p = check_table("metric." .. name, spec.params, {})
    out[name] = spec.measure(p, ctx, samples)
    C.progress(k)
  end
  if #names > 0 then C.progress_end() end
  return out
end

---------------------------------------------------------------- generative eval tasks
-- `potluck eval MODEL --task FILE.lua` (docs/eval.md, "Generative tasks"):
-- the file returns pl.task{...} (or the same table without pl.task); the
-- host asks H.task_describe for its items, then H.task_run generates and
-- scores the chosen ones with the model under evaluation. Both run in a
-- confined child (plugins/gen_task.c).
local JUDGE_RUBRIC = [==[
Please act as an impartial judge and evaluate the response of an AI assistant to the question below. {criteria}
Rate the response on a scale of {min} to {max} and reply with the rating only, as "Rating: N".

[Question]
{input}

[Reference answer]
{target}

[The Start of the Assistant's Answer]
{output}
[The End of the Assistant's Answer]]==]

local SCORERS = {
  exact = { strip = { type = "boolean", default = true }, lowercase = { type = "boolean", default = false } },
  contains = { strip = { type = "boolean", default = true }, lowercase = { type = "boolean", default = false } },
  regex = { pattern = { type = "string" }, flags = { type = "string", default = "" } },
  numeric = { abs = { type = "number", default = 1e-6, min = 0 }, rel = { type = "number", default = 0, min = 0 } },
  judge = {
    rubric = { type = "string", default = JUDGE_RUBRIC },
    criteria = { type = "string", default = "Consider its correctness against the reference answer, its helpfulness and its clarity." },
    model = { type = "string", default = "self" },
    min = { type = "number", default = 1 },
    max = { type = "number", default = 10 },
    max_tokens = { type = "integer", default = 24, min = 1, max = 4096 },
    system = { type = "string" },
  },
}
local SCORER_METRIC = { exact = "exact_match", contains = "contains", regex = "regex_match", numeric = "numeric_match",
                        judge = "judge", ["function"] = "score" }
local SCORER_NAMES = { "contains", "exact", "judge", "numeric", "regex" }

local scorer_fns = {}
pl.scorer = setmetatable({}, {
  __index = scorer_fns,
  __newindex = function(_, k) error(fmt("pl.scorer is read-only (assignment to pl.scorer.%s)", tostring(k)), 2) end,
  __metatable = "locked",
})
for kind, schema in pairs(SCORERS) do
  scorer_fns[kind] = function(t)
    local ok, r = pcall(check_table, "scorer." .. kind, schema, t or {})
    if not ok then error(r, 2) end
    if kind == "judge" and not (r.max > r.min) then error(fmt("scorer.judge: max %g must be above min %g", r.max, r.min), 2) end
    if kind == "judge" and not r.rubric:find("{output}", 1, true) then error("scorer.judge: rubric: expected an {output} placeholder", 2) end
    r._scorer = kind
    return r
  end
end

local GENERATE = {
  max_tokens = { type = "integer", default = 64, min = 1, max = 1 << 16 },
  temperature = { type = "number", default = 0, min = 0, doc = "0: greedy (the default)" },
  top_p = { type = "number", default = 0.9, min = 1e-6, max = 1 },
  top_k = { type = "integer", default = 0, min = 0 },
  stop = { type = "list", default = {} },
  batch = { type = "integer", default = 8, min = 1, max = 256 },
}
local TASK = {
  name = { type = "string" },
  description = { type = "string" },
  items = { type = "any", required = true },
  fields = { type = "table" },
  prompt = { type = "any" },
  template = { type = "string", default = "{input}" },
  system = { type = "string" },
  generate = { type = "table" },
  scorer = { type = "any", required = true },
  metric = { type = "string" },
}

local function check_task(t)
  local ok, r = pcall(check_table, "", TASK, t)
  if not ok then error("task: " .. r, 0) end
  if type(r.items) ~= "string" and type(r.items) ~= "table" then
    error("task: items: expected a list of tables or a JSONL file path, got " .. shown(r.items), 0)
  end
  if r.prompt == nil then r.prompt = "chat" end
  if r.prompt ~= "chat" and r.prompt ~= "raw" and type(r.prompt) ~= "function" then
    error("task: prompt: expected \"chat\", \"raw\" or a function(item), got " .. shown(r.prompt), 0)
  end
  ok, r.generate = pcall(check_table, "generate", GENERATE, r.generate or {})
  if not ok then error("task: " .. r.generate, 0) end
  for _, s in ipairs(r.generate.stop) do
    if type(s) ~= "string" or s == "" then error("task: generate.stop: expected non-empty strings", 0) end
  end
  local sc = r.scorer
  if type(sc) == "string" then
    if not SCORERS[sc] then
      error(fmt("task: scorer: unknown scorer %s (expected one of %s, pl.scorer.NAME{...} or a function(output, item))%s",
                shown(sc), concat(SCORER_NAMES, ", "), hint(sc, SCORER_NAMES)), 0)
    end
    sc = pl.scorer[sc]({})
  elseif type(sc) == "table" then
    if not SCORERS[sc._scorer] then
      error("task: scorer: expected pl.scorer.NAME{...} (" .. concat(SCORER_NAMES, ", ") .. "), a name or a function(output, item)", 0)
    end
  elseif type(sc) ~= "function" then
    error("task: scorer: expected a name (" .. concat(SCORER_NAMES, ", ") .. "), pl.scorer.NAME{...} or a function(output, item), got "
          .. shown(sc), 0)
  end
  r.scorer = sc
  r.kind = type(sc) == "function" and "function" or sc._scorer
  if r.metric and not r.metric:match("^[%w_.%-]+$") then error("task: metric: letters, digits, '_', '.', '-' only", 0) end
  r.metric = r.metric or SCORER_METRIC[r.kind]
  r._task = true
  return r
end

function pl.task(t)
  local ok, r = pcall(check_task, t)
  if not ok then error(r, 2) end
  return r
end

local function task_of(t)
  if type(t) ~= "table" then error("the task file must return pl.task{...} (a table), got " .. shown(t), 0) end
  if t._task then return t end
  return check_task(t)
end

-- The items as the task defines them, fields mapped; checked for what the
-- prompt and the scorer need.
local function task_items(t)
  local raw, where = {}, {}
  if type(t.items) == "string" then
    local path = C.resolve(t.items, "task: items")
    local shown_path = C.display(path)
    local n = 0
    for s in C.reader(path) do
      n = n + 1
      raw[n] = s
      where[n] = fmt("%s:%d", shown_path, n)
    end
  else
    if not is_list(t.items) then error("task: items: expected a list of tables", 0) end
    for i, s in ipairs(t.items) do
      if type(s) ~= "table" then error(fmt("task: items[%d]: expected a table, got %s", i, shown(s)), 0) end
      raw[i] = s
      where[i] = fmt("items[%d]", i)
    end
  end
  if #raw == 0 then error("task: items: no items", 0) end
  local items = {}
  local map = t.fields or {}
  for i, s in ipairs(raw) do
    local it = {}
    for k, v in pairs(s) do it[k] = v end
    for to, from in pairs(map) do
      if type(to) ~= "string" or type(from) ~= "string" then error("task: fields: expected {name = \"field in the items\", ...}", 0) end
      it[to] = s[from]
    end
    if type(t.prompt) ~= "function" and type(it.input) ~= "string" then
      error(fmt("task: %s: expected \"input\" (a string)%s, got %s", where[i],
                map.input and fmt(" from field %q", map.input) or "", shown(it.input)), 0)
    end
    local k = t.kind
    if k == "exact" or k == "contains" or k == "numeric" or (k == "regex" and not t.scorer.pattern) then
      local tg = it.target
      local ok = type(tg) == "string" or type(tg) == "number"
      if type(tg) == "table" and is_list(tg) and #tg > 0 then
        ok = true
        for _, x in ipairs(tg) do if type(x) ~= "string" and type(x) ~= "number" then ok = false end end
      end
      if not ok then
        error(fmt("task: %s: the %s scorer needs \"target\" (a string, a number or a list of them)%s, got %s", where[i], k,
                  map.target and fmt(" from field %q", map.target) or "", shown(tg)), 0)
      end
      if k == "numeric" then
        for _, x in ipairs(type(tg) == "table" and tg or { tg }) do
          if type(x) == "string" and not C.number_parse(x) then
            error(fmt("task: %s: target %s is not a number", where[i], shown(x)), 0)
          end
        end
      end
    end
    items[i] = it
  end
  return items, where
end

function H.task_describe(t, default_name)
  t = task_of(t)
  local items = task_items(t)
  local judge = t.kind == "judge" and t.scorer.model or nil
  return { name = t.name or default_name, metric = t.metric, scorer = t.kind, judge = judge, items = items }
end

-- "{field}" placeholders of s filled from the item (a missing field is an error).
local function fill(s, item, extra, where)
  return (s:gsub("{([%w_]+)}", function(k)
    local v = extra and extra[k]
    if v == nil then v = item[k] end
    if v == nil then error(fmt("task: %s: the template names {%s}, which the item does not have", where, k), 0) end
    if type(v) == "table" then v = v[1] end
    return tostring(v)
  end))
end

local function targets_of(it)
  local tg = it.target
  if type(tg) == "table" then return tg end
  return { tg }
end

-- (score in [0, 1] or nil, why nil) of one output
local function score_one(t, out, it, where)
  local k, sc = t.kind, t.scorer
  if k == "function" then
    local v = sc(out, it)
    if type(v) == "boolean" then return v and 1 or 0 end
    if type(v) ~= "number" or v ~= v or v < 0 or v > 1 then
      error(fmt("task: %s: the scorer returned %s; expected a number in [0, 1] or a boolean", where, shown(v)), 0)
    end
    return v
  elseif k == "regex" then
    if sc.pattern then return C.score_regex(out, sc.pattern, sc.flags) end
    for _, x in ipairs(targets_of(it)) do
      if C.score_regex(out, tostring(x), sc.flags) == 1 then return 1 end
    end
    return 0
  elseif k == "numeric" then
    for _, x in ipairs(targets_of(it)) do
      local v = type(x) == "number" and x or C.number_parse(x)
      if C.score_numeric(out, v, sc.abs, sc.rel) == 1 then return 1 end
    end
    return 0
  else
    local f = k == "exact" and C.score_exact or C.score_contains
    for _, x in ipairs(targets_of(it)) do
      if f(out, tostring(x), sc) == 1 then return 1 end
    end
    return 0
  end
end

-- Generate for prompts (the items at positions idx): greedy in batches;
-- sampled one by one, each item with a seed of its own (its index), so an
-- item's output does not depend on which others were chosen.
local function generate_all(m, prompts, idx, g, seed)
  local outs = {}
  local opts = { max_tokens = g.max_tokens, temperature = g.temperature, top_p = g.top_p, top_k = g.top_k,
                 stop = #g.stop > 0 and g.stop or nil, batch = g.batch, seed = seed }
  if g.temperature == 0 then
    local r = m:generate(prompts, opts)
    for i = 1, #prompts do outs[i] = r[i] end
  else
    for i = 1, #prompts do
      opts.seed = seed * 1000003 + idx[i]
      outs[i] = m:generate({ prompts[i] }, opts)[1]
    end
  end
  return outs
end

-- sel: the 0-based positions of the items to run; which: "base" or "tuned"
-- (the model under evaluation). Returns one record per item.
function H.task_run(t, default_name, sel, seed, which)
  t = task_of(t)
  local items, where = task_items(t)
  local name = t.name or default_name
  local m = C.model(which)
  local prompts, chosen, idx = {}, {}, {}
  for i, k in ipairs(sel) do
    local it = items[k + 1]
    if not it then error(fmt("task: item %d does not exist (the task has %d)", k, #items), 0) end
    chosen[i], idx[i] = it, k
    local w = where[k + 1]
    if type(t.prompt) == "function" then
      local p = t.prompt(it)
      if type(p) ~= "string" and not (type(p) == "table" and is_list(p)) then
        error(fmt("task: %s: prompt(item) returned %s; expected a string or a list of messages", w, shown(p)), 0)
      end
      prompts[i] = p
    elseif t.prompt == "raw" then
      prompts[i] = fill(t.template, it, nil, w)
    else
      local msgs = {}
      if t.system then msgs[1] = { role = "system", content = fill(t.system, it, nil, w) } end
      msgs[#msgs + 1] = { role = "user", content = fill(t.template, it, nil, w) }
      prompts[i] = msgs
    end
  end
  local g = t.generate
  local outs = {}
  local step = g.temperature == 0 and math.max(g.batch, 8) or 1
  for s0 = 1, #prompts, step do
    local ps, ix = {}, {}
    for i = s0, math.min(#prompts, s0 + step - 1) do ps[#ps + 1] = prompts[i]; ix[#ix + 1] = idx[i] end
    local r = generate_all(m, ps, ix, g, seed)
    for i, o in ipairs(r) do outs[s0 + i - 1] = o end
    if s0 + step - 1 < #prompts then C.log(name, fmt("%d/%d generated", s0 + step - 1, #prompts)) end
  end
  local res = {}
  if t.kind == "judge" then
    local sc = t.scorer
    -- the host passes a judge model ("teacher") when the task names one or
    -- the command line gives --judge; otherwise the model judges itself
    local has_judge, tm = pcall(C.model, "teacher")
    local jm = has_judge and tm or m
    local jp = {}
    for i, it in ipairs(chosen) do
      local input = type(prompts[i]) == "string" and prompts[i] or fill(t.template, it, nil, where[idx[i] + 1])
      local extra = { output = outs[i], input = input, target = it.target ~= nil and it.target or "(none)",
                      min = fmt("%g", sc.min), max = fmt("%g", sc.max), criteria = sc.criteria }
      local text = fill(sc.rubric, it, extra, where[idx[i] + 1])
      local msgs = {}
      if sc.system then msgs[1] = { role = "system", content = sc.system } end
      msgs[#msgs + 1] = { role = "user", content = text }
      jp[i] = msgs
    end
    local replies = jm:generate(jp, { max_tokens = sc.max_tokens, temperature = 0, batch = g.batch })
    for i = 1, #chosen do
      local v, why = C.judge_parse(replies[i], sc.min, sc.max)
      res[i] = { index = idx[i], prompt = prompts[i], output = outs[i], judge = replies[i],
                 score = v and (v - sc.min) / (sc.max - sc.min) or nil, unparsed = why }
    end
  else
    for i, it in ipairs(chosen) do
      res[i] = { index = idx[i], prompt = prompts[i], output = outs[i], score = score_one(t, outs[i], it, where[idx[i] + 1]) }
    end
  end
  return res
end

---------------------------------------------------------------- built-ins
current_plugin = { file = "plugins/prelude.lua", sha256 = C.prelude_sha256, origin = "built-in" }

pl.register {
  api = 1, kind = "source", name = "jsonl",
  doc = "Samples from a JSONL (or JSON array) file in any importer format: messages, "
     .. "conversations (ShareGPT), alpaca, text, input/output. Chat formats become messages.",
  params = {
    path = { type = "file", required = true, doc = "the file, relative to the recipe" },
    format = { type = "string", default = "auto", choices = { "auto", "openai", "messages", "sharegpt", "alpaca", "text", "io" } },
    limit = { type = "integer", min = 1, doc = "keep the first N records" },
  },
  stream = function(p, ctx, input, emit)
    for s in input() do emit(s) end
    local n = 0
    for s in C.import(p.path, p.format) do
      if p.limit and n >= p.limit then break end
      emit(s)
      n = n + 1
    end
  end,
}

pl.register {
  api = 1, kind = "source", name = "text",
  doc = "Plain-text samples: one per line, per paragraph (blank-line separated) or the whole file.",
  params = {
    path = { type = "file", required = true },
    unit = { type = "string", default = "paragraph", choices = { "line", "paragraph", "file" } },
  },
  stream = function(p, ctx, input, emit)
    for s in input() do emit(s) end
    local name = C.display(p.path)
    if p.unit == "file" then
      emit({ text = C.read_file(p.path), _prov = { source = name .. ":1" } })
      return
    end
    local buf, start, ln = {}, nil, 0
    local function flush()
      if #buf > 0 then emit({ text = concat(buf, "\n"), _prov = { source = name .. ":" .. start } }) end
      buf, start = {}, nil
    end
    for line in C.lines(p.path) do
      ln = ln + 1
      if p.unit == "line" then
        if line:find("%S") then emit({ text = line, _prov = { source = name .. ":" .. ln } }) end
      elseif line:find("%S") then
        start = start or ln
        buf[#buf + 1] = line
      else
        flush()
      end
    end
    flush()
  end,
}

pl.register {
  api = 1, kind = "source", name = "lua",
  doc = "Samples from a Lua function fn(ctx, emit) (programmatic source).",
  params = { fn = { type = "function", required = true } },
  stream = function(p, ctx, input, emit)
    for s in input() do emit(s) end
    p.fn(ctx, emit)
  end,
}

pl.register {
  api = 1, kind = "map", name = "lua",
  doc = "pl.map(function(sample) ... return sample end): change each sample.",
  params = { fn = { type = "function", required = true } },
  each = function(p) return p.fn end,
}

pl.register {
  api = 1, kind = "filter", name = "lua",
  doc = "pl.filter(function(sample) return keep [, reason] end): keep samples the function accepts.",
  params = { fn = { type = "function", required = true } },
  each = function(p) return p.fn end,
}

pl.register {
  api = 1, kind = "generate", name = "lua",
  doc = "pl.generate(function(ctx, emit, input) ... end): a programmatic generator written in Lua; "
     .. "the input samples are passed through first.",
  params = { fn = { type = "function", required = true } },
  stream = function(p, ctx, input, emit)
    local kept = {}
    for s in input() do kept[#kept + 1] = s; emit(s) end
    local i = 0
    p.fn(ctx, emit, function() i = i + 1 return kept[i] end)
  end,
}

pl.register {
  api = 1, kind = "split", name = "hash",
  doc = "pl.split{eval = 0.1}: mark each sample train or eval by a hash of its text and the seed, "
     .. "so a sample keeps its side when other samples change.",
  params = {
    eval = { type = "number", default = 0.1, min = 0, max = 0.9, doc = "fraction held out for eval" },
    seed = { type = "integer", default = 0, min = 0 },
  },
  each = function(p)
    return function(s)
      s.split = C.unit_hash(pl.text(s), p.seed) < p.eval and "eval" or "train"
      return s
    end
  end,
}
pl.register {
  api = 1, kind = "filter", name = "score",
  doc = "Keep samples whose score from a scorer plugin lies in [min, max].",
  params = {
    scorer = { type = "string", required = true, doc = "name of a registered scorer plugin" },
    min = { type = "number", doc = "lowest score kept" },
    max = { type = "number", doc = "highest score kept" },
    args = { type = "table", default = {}, doc = "parameters for the scorer" },
  },
  each = function(p, ctx)
    local spec = registry.scorer[p.scorer]
    if not spec then
      error(fmt("filter.score: no scorer plugin named '%s'%s", p.scorer, hint(p.scorer, keys_of(registry.scorer))), 0)
    end
    local sp = check_table("scorer." .. p.scorer, spec.params, p.args)
    local f = spec.score(sp, ctx)
    return function(s)
      local v = f(s)
      if type(v) ~= "number" then error(fmt("scorer %s returned %s, expected a number", p.scorer, shown(v)), 0) end
      if p.min and v < p.min then return false, fmt("%s %g < min %g", p.scorer, v, p.min) end
      if p.max and v > p.max then return false, fmt("%s %g > max %g", p.scorer, v, p.max) end
      return true
    end
  end,
}

pl.register {
  api = 1, kind = "scorer", name = "words",
  doc = "Number of whitespace-separated words of the sample's text.",
  score = function()
    return function(s)
      local n = 0
      for _ in string.gmatch(pl.text(s), "%S+") do n = n + 1 end
      return n
    end
  end,
}

pl.register {
  api = 1, kind = "metric", name = "distinct_2",
  doc = "Distinct-2 (Li et al. 2016): distinct word bigrams / all word bigrams over the samples' texts.",
  measure = function(p, ctx, samples)
    local seen, all, distinct = {}, 0, 0
    for _, s in ipairs(samples) do
      local prev
      for w in string.gmatch(string.lower(pl.text(s)), "%S+") do
        if prev then
          local k = prev .. " " .. w
          all = all + 1
          if not seen[k] then seen[k] = true; distinct = distinct + 1 end
        end
        prev = w
      end
    end
    return all > 0 and distinct / all or 0
  end,
}

pl.register {
  api = 1, kind = "metric", name = "mean_chars",
  doc = "Mean length of the samples' texts in characters (UTF-8 code points).",
  measure = function(p, ctx, samples)
    local n = 0
    for _, s in ipairs(samples) do local t = pl.text(s) n = n + (utf8.len(t) or #t) end
    return #samples > 0 and n / #samples or 0
  end,
}
current_plugin = nil

---------------------------------------------------------------- the module
local proxy = setmetatable({}, {
  __index = pl,
  __newindex = function(_, k) error(fmt("the potluck module is read-only (assignment to pl.%s)", tostring(k)), 2) end,
  __metatable = "locked",
  __pairs = function()
    -- iterate without handing out the inner table
    local k
    return function()
      local v
      k, v = next(pl, k)
      return k, v
    end
  end,
})

return proxy, H
