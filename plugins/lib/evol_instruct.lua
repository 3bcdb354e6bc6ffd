-- evol_instruct.lua: Evol-Instruct (WizardLM, Xu et al. 2023): the input
-- samples' instructions are rewritten in depth (add constraints, deepen,
-- concretize, more reasoning steps) or in breadth (a new, rarer instruction
-- of the same domain) for a number of rounds; failed evolutions are
-- eliminated as in the paper and the survivors are answered by the model.
-- Each input's lineage depends on that input, its index and the seed only
-- (its evolution kinds are drawn by index, its prompts sample from the RNG
-- stream of its position among the inputs with an instruction), and the
-- output is in input order: each input, then its kept evolutions by round.
-- So ranks split the inputs by index (shard = "sample", docs/distributed.md)
-- and their parts, one after another, are what one process writes.
local pl = require "potluck"

local U = require "genutil"
local trim, words, instruction_of = U.trim, U.words, U.instruction_of

local DEPTH = [[
I want you to act as a prompt rewriter. Rewrite the given prompt into a more
complex version that well-known AI systems would find somewhat harder to
handle, while it stays reasonable and something a human can understand and
answer. Keep any non-text parts of #The Given Prompt# (tables, code) and keep
its input. Make it harder with this method:
%s
Do not make #Rewritten Prompt# verbose: it may add only 10 to 20 words to
#The Given Prompt#. The words '#The Given Prompt#', '#Rewritten Prompt#',
'given prompt' and 'rewritten prompt' must not appear in #Rewritten Prompt#.
#The Given Prompt#:
%s
#Rewritten Prompt#:
]]

local METHODS = {
  constraints = "Add one more constraint or requirement to #The Given Prompt#.",
  deepen = "If #The Given Prompt# asks about certain issues, increase the depth and breadth of the inquiry.",
  concretize = "Replace general concepts with more specific ones.",
  reasoning = "If #The Given Prompt# can be solved with a few simple steps of thinking, rewrite it to ask explicitly for multi-step reasoning.",
}
local KINDS = { "constraints", "deepen", "concretize", "reasoning", "breadth" }

local BREADTH = [[
I want you to act as a prompt creator. Take inspiration from #Given Prompt#
to create a brand-new prompt. It must belong to the same domain as #Given
Prompt# but be rarer. Its length and complexity should be similar to those
of #Given Prompt#, and it must be reasonable and something a human can
understand and answer. The words '#Given Prompt#', '#Created Prompt#', 'given
prompt' and 'created prompt' must not appear in #Created Prompt#.
#Given Prompt#:
%s
#Created Prompt#:
]]

-- Common English stop words (for the "only punctuation and stop words" rule).
local STOP = {}
for w in ([[a an the and or but if then else of to in on at by for with from as is are was were be been being
  it its this that these those i you he she we they me him her us them my your his our their not no yes so
  do does did have has had can could will would should may might must shall there here what which who whom
  how why when where all any some such than too very just also only own same other into about over under
  again further once up down out off ok okay]]):gmatch("%a+") do STOP[w] = true end

local function only_stop_words(s)
  for w in s:lower():gmatch("%a+") do
    if not STOP[w] then return false end
  end
  return true
end

local function norm(s) return (s:lower():gsub("%p", " "):gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")) end

-- The rewritten prompt from the model's answer: leading echoed labels
-- ("#Rewritten Prompt#:", "#The Given Prompt#:") removed, cut at a later one.
local function clean(out)
  local s = trim(out)
  for _ = 1, 3 do
    local t = s:gsub("^#?%s*[Tt]?h?e?%s*[GgRrCc]%a+ [Pp]rompt%s*#?%s*:%s*", "", 1)
    t = t:gsub("^%*+", ""):gsub("%*+$", "")
    t = trim(t)
    if t == s then break end
    s = t
  end
  local cut = s:find("\n%s*#[^#\n]*[Pp]rompt%s*#")
  if cut then s = trim(s:sub(1, cut - 1)) end
  return s
end

-- Why an evolution is eliminated (nil: it is kept). Rules of WizardLM's
-- "elimination evolving": no information gain (equal to the original), the
-- prompt's own words copied in, only punctuation and stop words, and (once
-- answered) a short answer that apologizes.
local function eliminate_instruction(orig, evolved)
  if evolved == "" then return "empty" end
  if norm(evolved) == norm(orig) then return "equal to the original" end
  local low = evolved:lower()
  for _, w in ipairs({ "given prompt", "rewritten prompt", "created prompt", "#given", "#rewritten", "#created" }) do
    if low:find(w, 1, true) then return "copies the evolving prompt ('" .. w .. "')" end
  end
  if only_stop_words(evolved) then return "only punctuation and stop words" end
  return nil
end

-- The evolution kind of an input's round: a splitmix64 finalizer of (seed,
-- input index, round) on Lua's wrapping 64-bit integers, so any rank draws it.
local function mix(x)
  x = (x ~ (x >> 30)) * 0xbf58476d1ce4e5b9
  x = (x ~ (x >> 27)) * 0x94d049bb133111eb
  return x ~ (x >> 31)
end

local function pick(n, seed, index, round)
  return 1 + mix(mix(mix(seed) ~ index) ~ round) % n
end

local function eliminate_response(resp)
  if resp == "" then return "empty response" end
  if resp:lower():find("sorry", 1, true) and words(resp) < 80 then return "response apologizes" end
  if only_stop_words(resp) then return "response is only punctuation and stop words" end
  return nil
end

pl.register {
  api = 1,
  kind = "generate",
  name = "evol_instruct",
  shard = "sample", -- a lineage depends on its input, its index and the seed only
  doc = "Evol-Instruct: in-depth and in-breadth rewrites of the input instructions for several rounds, "
    .. "with WizardLM's elimination rules; kept evolutions are answered by the model.",
  params = {
    rounds = { type = "integer", default = 4, min = 1, max = 16, doc = "evolution rounds (WizardLM: 4)" },
    kinds = { type = "list", doc = "evolutions to draw from (default all: constraints, deepen, concretize, reasoning, breadth)" },
    keep_original = { type = "boolean", default = true, doc = "pass the input samples through" },
    temperature = { type = "number", default = 0.7, min = 0 },
    top_p = { type = "number", default = 0.9, min = 0, max = 1 },
    max_tokens = { type = "integer", default = 256, min = 1, doc = "new tokens per rewrite and per answer" },
    batch = { type = "integer", default = 8, min = 1, doc = "prompts per m:generate call" },
  },
  stream = function(p, ctx, input, emit)
    local kinds = p.kinds or KINDS
    for i, k in ipairs(kinds) do
      if k ~= "breadth" and not METHODS[k] then
        error("evol_instruct: kinds[" .. i .. "]: unknown evolution '" .. tostring(k)
          .. "' (expected constraints, deepen, concretize, reasoning or breadth)", 0)
      end
    end
    -- the pool: one entry per input sample with an instruction; pos, its place
    -- among those (0-based), is the RNG stream of its prompts. Every rank reads
    -- every input (positions are global) and keeps the lineages of its part.
    local part = ctx.part
    local function mine(i) return not part or (i > part.lo and i <= part.hi) end
    local pool, lineages = {}, {}
    local n_in, pos = 0, 0
    for s in input() do
      n_in = n_in + 1
      local inst = instruction_of(s)
      local has = inst and inst:find("%S")
      if mine(n_in) then
        local lin = { sample = s, kept = {} }
        lineages[#lineages + 1] = lin
        if has then pool[#pool + 1] = { inst = inst, parent = n_in, pos = pos, lin = lin } end
      end
      if has then pos = pos + 1 end
    end
    local m = #pool > 0 and ctx.model() or nil
    local made = 0
    local removed = {}
    -- prompts of pool entries, sampled from their positions' streams: one m:generate call per run of
    -- consecutive positions (every run of the part's pool is one call in round prompts)
    local function generate(items, text_of, seed)
      local res, k = {}, 1
      while k <= #items do
        local j = k
        while j < #items and items[j + 1].pos == items[j].pos + 1 do j = j + 1 end
        local prompts = {}
        for q = k, j do prompts[#prompts + 1] = { { role = "user", content = text_of(items[q]) } } end
        local outs = m:generate(prompts, { max_tokens = p.max_tokens, temperature = p.temperature, top_p = p.top_p,
          seed = seed, batch = p.batch, stream0 = items[k].pos })
        for q = k, j do res[q] = outs[q - k + 1] end
        k = j + 1
      end
      return res
    end
    for round = 1, p.rounds do
      if #pool == 0 then break end
      for _, it in ipairs(pool) do it.kind = kinds[pick(#kinds, ctx.seed, it.parent, round)] end
      local outs = generate(pool, function(it)
        return it.kind == "breadth" and string.format(BREADTH, it.inst) or string.format(DEPTH, METHODS[it.kind], it.inst)
      end, ctx.seed * 1000003 + round * 7919)
      local cand = {}
      for i, it in ipairs(pool) do
        local ev = clean(outs[i])
        local why = eliminate_instruction(it.inst, ev)
        if why then removed[why] = (removed[why] or 0) + 1
        else cand[#cand + 1] = { pool_i = i, inst = ev, kind = it.kind, pos = it.pos } end
      end
      local answers = generate(cand, function(c) return c.inst end, ctx.seed * 1000003 + round * 7919 + 1)
      local kept = 0
      -- kept evolutions replace their parent in the pool; failed ones leave the parent for the next round
      for k, c in ipairs(cand) do
        local resp = trim(answers[k])
        local why = eliminate_response(resp)
        if why then
          removed[why] = (removed[why] or 0) + 1
        else
          made = made + 1
          kept = kept + 1
          local it = pool[c.pool_i]
          it.lin.kept[#it.lin.kept + 1] = { messages = { { role = "user", content = c.inst }, { role = "assistant", content = resp } },
            _prov = { generator = "evol_instruct", seed = ctx.seed, parent = it.parent, parent_round = it.round,
              evolution = c.kind, round = round } }
          it.inst, it.round = c.inst, round
        end
      end
      ctx.log(string.format("evol_instruct: round %d: %d of %d evolutions kept", round, kept, #pool))
    end
    -- input order: each input (keep_original), then its kept evolutions by round
    for _, lin in ipairs(lineages) do
      if p.keep_original then emit(lin.sample) end
      for _, s in ipairs(lin.kept) do emit(s) end
    end
    local why = {}
    for k, v in pairs(removed) do why[#why + 1] = k .. " " .. v end
    table.sort(why)
    ctx.log("evol_instruct: " .. made .. " evolutions; eliminated: " .. (#why > 0 and table.concat(why, ", ") or "none"))
  end,
}
