-- self_instruct.lua: Self-Instruct (Wang et al., 2022): the model writes new
-- instructions from few-shot prompts of seed and generated tasks; candidates
-- are cleaned, filtered (length, keyword blocklist, ROUGE-L novelty against
-- every task so far) and answered by the same model.
local pl = require "potluck"
local U = require "genutil"
local trim, words, instruction_of = U.trim, U.words, U.instruction_of

-- Self-Instruct's blocklist: tasks a text-only model cannot do.
local BLOCKLIST = { "image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map", "maps",
  "draw", "plot", "go to", "video", "audio", "music", "flowchart", "diagram" }

-- A small JSON decoder for the seed file (objects, arrays, strings with
-- escapes, numbers, true/false/null); errors name the line.
local function load_seeds(path)
  local tasks = {}
  local ln = 0
  for line in (pl.read_file(path) .. "\n"):gmatch("([^\n]*)\n") do
    ln = ln + 1
    if line:find("%S") then
      local ok, t = pcall(pl.json_decode, line)
      if not ok then error(path .. ":" .. ln .. ": invalid JSON", 0) end
      if type(t) ~= "table" then error(path .. ":" .. ln .. ": expected a JSON object", 0) end
      local inst = t.instruction
      if type(inst) ~= "string" or not inst:find("%S") then
        error(path .. ":" .. ln .. ": expected a non-empty \"instruction\" string", 0)
      end
      tasks[#tasks + 1] = inst
    end
  end
  return tasks
end

local function clean_instruction(text)
  return U.first_line(text, { "^[Nn]ew [Tt]ask%s*%d*%s*:%s*", "^[Tt]ask%s*%d*%s*:%s*", "^[Ii]nstruction%s*%d*%s*:%s*" })
end

-- nil when the instruction passes Self-Instruct's heuristics, else why not.
local function reject_reason(inst)
  if inst == "" then return "empty" end
  local nw = words(inst)
  if nw < 3 then return "too short" end
  if nw > 150 then return "too long" end
  local low = inst:lower()
  for _, w in ipairs(BLOCKLIST) do
    if low:find("%f[%w]" .. w:gsub(" ", "%%s+") .. "%f[%W]") then return "blocklisted word '" .. w .. "'" end
  end
  if low:find("^write a program") then return "program task" end
  if inst:find("^%p") then return "starts with punctuation" end
  if inst:byte(1) >= 128 then return "starts with a non-ASCII character" end
  return nil
end

-- A distinct generation seed per (stage seed, round, phase).
local function call_seed(seed, round, phase)
  return seed * 1000003 + round * 7919 + phase
end

pl.register {
  api = 1,
  kind = "generate",
  name = "self_instruct",
  shard = "calls", -- every rank runs it; each model call is split by prompt index (docs/distributed.md)
  doc = "Self-Instruct: new instructions from few-shot prompts of seed tasks (and tasks generated so far), "
    .. "filtered for length, blocklisted words and ROUGE-L novelty, then answered by the model.",
  params = {
    seeds = { type = "file", doc = "JSONL seed tasks {\"instruction\", \"input\"?, \"output\"?}; the input samples' user turns are seeds too" },
    n = { type = "integer", required = true, min = 1, doc = "number of new samples" },
    few_shot = { type = "integer", default = 8, min = 1, max = 32,
      doc = "tasks per prompt: up to 2 generated ones, the rest seeds (Self-Instruct: 6 + 2)" },
    temperature = { type = "number", default = 0.7, min = 0, doc = "sampling temperature" },
    top_p = { type = "number", default = 0.9, min = 0, max = 1, doc = "nucleus mass" },
    max_tokens = { type = "integer", default = 256, min = 1, doc = "new tokens per instruction and per answer" },
    novelty = { type = "number", default = 0.7, min = 0, max = 1,
      doc = "keep a new instruction only if its ROUGE-L with every earlier task is below this" },
    batch = { type = "integer", default = 8, min = 1, doc = "prompts per m:generate call (and per round)" },
    max_rounds = { type = "integer", min = 1, doc = "round budget (default 10 + 4 * ceil(n / batch))" },
    on_shortfall = { type = "string", default = "error", choices = { "error", "warn" },
      doc = "what to do when the round budget ends before n samples: raise an error or log a warning and emit what was made" },
    chat = { type = "boolean", default = true,
      doc = "ask through the chat template (instruct models); false: Self-Instruct's raw \"Task N:\" completion prompt" },
  },
  stream = function(p, ctx, input, emit)
    local seeds = {}
    if p.seeds then seeds = load_seeds(p.seeds) end
    for s in input() do
      emit(s)
      local inst = instruction_of(s)
      if inst and inst:find("%S") then seeds[#seeds + 1] = inst end
    end
    if #seeds == 0 then error("self_instruct: no seed tasks: give seeds = FILE or input samples", 0) end
    local m = ctx.model()
    local generated = {}          -- accepted instructions, in order
    local pool = {}               -- every task so far, for the novelty filter
    for _, t in ipairs(seeds) do pool[#pool + 1] = t end
    local max_rounds = p.max_rounds or (10 + 4 * ((p.n + p.batch - 1) // p.batch))
    local made = 0
    local rejected = {}
    local round = 0
    while made < p.n and round < max_rounds do
      round = round + 1
      -- few-shot prompts: up to 2 generated tasks, the rest human seeds
      local prompts = {}
      for b = 1, p.batch do
        local n_gen = math.min(2, #generated)
        local n_seed = math.min(p.few_shot - n_gen, #seeds)
        local shots = {}
        local idx = {}
        for i = 1, #seeds do idx[i] = i end
        for i = 1, n_seed do
          local j = math.random(i, #idx)
          idx[i], idx[j] = idx[j], idx[i]
          shots[#shots + 1] = seeds[idx[i]]
        end
        local gidx = {}
        for i = 1, #generated do gidx[i] = i end
        for i = 1, n_gen do
          local j = math.random(i, #gidx)
          gidx[i], gidx[j] = gidx[j], gidx[i]
          shots[#shots + 1] = generated[gidx[i]]
        end
        if p.chat then
          local lines = { "Here are some example tasks for an AI assistant:", "" }
          for i, t in ipairs(shots) do lines[#lines + 1] = i .. ". " .. t:gsub("%s+", " ") end
          lines[#lines + 1] = ""
          lines[#lines + 1] = "Write one new task that is different from all of these. Reply with the task only."
          prompts[b] = { { role = "user", content = table.concat(lines, "\n") } }
        else
          local lines = { "Come up with a series of tasks:", "" }
          for i, t in ipairs(shots) do lines[#lines + 1] = "Task " .. i .. ": " .. t:gsub("%s+", " ") end
          lines[#lines + 1] = "Task " .. (#shots + 1) .. ":"
          prompts[b] = table.concat(lines, "\n")
        end
      end
      local outs = m:generate(prompts, { max_tokens = p.max_tokens, temperature = p.temperature, top_p = p.top_p,
        seed = call_seed(ctx.seed, round, 0), batch = p.batch, stop = p.chat and nil or { "\nTask", "\n\n" } })
      -- clean, filter, novelty against everything so far (and earlier candidates of this round)
      local accepted = {}
      for _, o in ipairs(outs) do
        if made + #accepted >= p.n then break end
        local inst = clean_instruction(o)
        local why = reject_reason(inst)
        if not why then
          for _, t in ipairs(pool) do
            if pl.rouge_l(inst, t) >= p.novelty then why = "not novel (ROUGE-L)"; break end
          end
        end
        if why then
          rejected[why] = (rejected[why] or 0) + 1
        else
          accepted[#accepted + 1] = inst
          pool[#pool + 1] = inst
        end
      end
      if #accepted > 0 then
        local qs = {}
        for i, inst in ipairs(accepted) do qs[i] = { { role = "user", content = inst } } end
        local answers = m:generate(qs, { max_tokens = p.max_tokens, temperature = p.temperature, top_p = p.top_p,
          seed = call_seed(ctx.seed, round, 1), batch = p.batch })
        for i, inst in ipairs(accepted) do
          local a = trim(answers[i])
          if a == "" then
            rejected["empty answer"] = (rejected["empty answer"] or 0) + 1
          else
            made = made + 1
            generated[#generated + 1] = inst
            emit { messages = { { role = "user", content = inst }, { role = "assistant", content = a } },
              _prov = { generator = "self_instruct", seed = ctx.seed, index = made } }
          end
        end
      end
      ctx.log(string.format("self_instruct: round %d: %d/%d samples", round, made, p.n))
    end
    if made < p.n then
      local why = {}
      for k, v in pairs(rejected) do why[#why + 1] = k .. " " .. v end
      table.sort(why)
      local msg = string.format("self_instruct: made %d of %d samples in %d rounds (rejected: %s)", made, p.n, round,
        #why > 0 and table.concat(why, ", ") or "none")
      if p.on_shortfall == "error" then error(msg .. "; raise max_rounds or relax the filters", 0) end
      ctx.log("warning: " .. msg)
    end
  end,
}
