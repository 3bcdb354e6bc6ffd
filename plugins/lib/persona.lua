-- persona.lua: persona-driven generation (as in Persona Hub, Ge et al. 2024):
-- each persona is crossed with task templates; the model writes a task in
-- that persona's voice, then answers it.
local pl = require "potluck"

local U = require "genutil"
local trim = U.trim

-- The first real line of the model's answer, without labels, list markers and quotes.
local function clean_task(text)
  return U.first_line(text, { "^[Qq]uestion%s*:%s*", "^[Rr]equest%s*:%s*", "^[Tt]ask%s*:%s*" })
end

local DEFAULT_TASKS = {
  "Write a question that {persona} might ask an AI assistant. Reply with the question only.",
  "Write a short, specific task that {persona} might give an AI assistant. Reply with the task only.",
}

pl.register {
  api = 1,
  kind = "generate",
  name = "persona",
  shard = "calls", -- every rank runs it; each model call is split by prompt index (docs/distributed.md)
  doc = "Persona-driven generation: personas crossed with task templates (in a seeded shuffled order); "
    .. "the model writes a task for each persona, then answers it.",
  params = {
    personas = { type = "list", doc = "persona descriptions, e.g. \"a retired sailor\"" },
    personas_file = { type = "file", doc = "a text file with one persona per line (added to personas)" },
    tasks = { type = "list", doc = "task templates with a {persona} placeholder (default: a question and a request)" },
    n = { type = "integer", required = true, min = 1, doc = "number of samples; the crossed list repeats when n is larger" },
    temperature = { type = "number", default = 0.7, min = 0 },
    top_p = { type = "number", default = 0.9, min = 0, max = 1 },
    max_tokens = { type = "integer", default = 256, min = 1, doc = "new tokens per task and per answer" },
    batch = { type = "integer", default = 8, min = 1, doc = "prompts per m:generate call" },
    max_rounds = { type = "integer", default = 5, min = 1,
      doc = "attempts per sample; a sample whose task or answer stays empty is dropped with a warning" },
  },
  stream = function(p, ctx, input, emit)
    for s in input() do emit(s) end
    local personas = {}
    for _, x in ipairs(p.personas or {}) do personas[#personas + 1] = tostring(x) end
    if p.personas_file then
      for line in (pl.read_file(p.personas_file) .. "\n"):gmatch("([^\n]*)\n") do
        line = trim(line)
        if line ~= "" then personas[#personas + 1] = line end
      end
    end
    if #personas == 0 then error("persona: no personas: give personas = {...} or personas_file", 0) end
    local tasks = p.tasks or DEFAULT_TASKS
    for i, t in ipairs(tasks) do
      if type(t) ~= "string" or not t:find("{persona}", 1, true) then
        error("persona: tasks[" .. i .. "]: expected a string with a {persona} placeholder", 0)
      end
    end
    -- personas x tasks in a seeded shuffled order
    local combos = {}
    for pi = 1, #personas do for ti = 1, #tasks do combos[#combos + 1] = { pi, ti } end end
    for i = #combos, 2, -1 do
      local j = math.random(1, i)
      combos[i], combos[j] = combos[j], combos[i]
    end
    local items = {}
    for i = 1, p.n do
      local c = combos[(i - 1) % #combos + 1]
      local persona = personas[c[1]]
      items[i] = { persona = persona, task = c[2],
        prompt = tasks[c[2]]:gsub("{persona}", function() return persona end) }
    end
    local pending = {}
    for i = 1, p.n do pending[i] = i end
    for round = 1, p.max_rounds do
      if #pending == 0 then break end
      local qs = {}
      for k, i in ipairs(pending) do qs[k] = { { role = "user", content = items[i].prompt } } end
      local m = ctx.model()
      local outs = m:generate(qs, { max_tokens = p.max_tokens, temperature = p.temperature, top_p = p.top_p,
        seed = ctx.seed * 1000003 + round * 7919, batch = p.batch })
      local asked, ask_idx = {}, {}
      for k, i in ipairs(pending) do
        local t = clean_task(outs[k])
        if t ~= "" then
          items[i].instruction = t
          asked[#asked + 1] = { { role = "user", content = t } }
          ask_idx[#ask_idx + 1] = i
        end
      end
      if #asked > 0 then
        local answers = m:generate(asked, { max_tokens = p.max_tokens, temperature = p.temperature, top_p = p.top_p,
          seed = ctx.seed * 1000003 + round * 7919 + 1, batch = p.batch })
        for k, i in ipairs(ask_idx) do
          local a = trim(answers[k])
          if a ~= "" then items[i].answer = a end
        end
      end
      local still = {}
      for _, i in ipairs(pending) do if not items[i].answer then still[#still + 1] = i end end
      pending = still
      ctx.log(string.format("persona: round %d: %d/%d samples", round, p.n - #pending, p.n))
    end
    if #pending > 0 then
      ctx.log(string.format("warning: persona: %d of %d samples got no task or answer in %d rounds and were dropped",
        #pending, p.n, p.max_rounds))
    end
    for i, it in ipairs(items) do
      if it.answer then
        emit { messages = { { role = "user", content = it.instruction }, { role = "assistant", content = it.answer } },
          _prov = { generator = "persona", seed = ctx.seed, index = i, persona = it.persona, task = it.task } }
      end
    end
  end,
}
