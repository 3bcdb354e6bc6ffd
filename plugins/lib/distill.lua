-- distill.lua: distillation: a teacher model (the base or the recipe's
-- teacher) answers each input sample's user turn; its answer replaces the
-- sample's last assistant turn or is added as one.
local pl = require "potluck"

local trim = (require "genutil").trim

-- The conversation up to and including the last user turn, as a new list.
local function prompt_of(s)
  if type(s.messages) == "table" then
    local last = 0
    for i, m in ipairs(s.messages) do if m.role == "user" then last = i end end
    if last == 0 then return nil end
    local out = {}
    for i = 1, last do out[i] = { role = s.messages[i].role, content = s.messages[i].content } end
    return out
  end
  local u
  if type(s.instruction) == "string" then
    u = s.instruction
    if type(s.input) == "string" and s.input ~= "" then u = u .. "\n\n" .. s.input end
  elseif type(s.prompt) == "string" then
    u = s.prompt
  elseif type(s.text) == "string" then
    u = s.text
  end
  if not u then return nil end
  return { { role = "user", content = u } }
end

pl.register {
  api = 1,
  kind = "generate",
  name = "distill",
  shard = "sample", -- an answer depends on its sample, its index and the seed only
  doc = "Distillation: a teacher model answers each sample's user turn (replacing or adding the assistant turn).",
  params = {
    teacher = { type = "string", default = "teacher", choices = { "base", "teacher" },
      doc = "which model answers: the recipe's teacher (--teacher) or the base model" },
    temperature = { type = "number", default = 0.7, min = 0 },
    top_p = { type = "number", default = 0.9, min = 0, max = 1 },
    max_tokens = { type = "integer", default = 512, min = 1, doc = "new tokens per answer" },
    batch = { type = "integer", default = 8, min = 1, doc = "prompts per m:generate call" },
    empty = { type = "string", default = "drop", choices = { "drop", "keep" },
      doc = "a sample whose answer is empty (or that has no user turn): drop it or keep it unchanged" },
  },
  stream = function(p, ctx, input, emit)
    local m = ctx.load_model(p.teacher or "teacher")
    local name = m:name()
    local chunk = {}
    local n_in, n_dropped = 0, 0
    local part = ctx.part
    local function mine(i) return not part or (i > part.lo and i <= part.hi) end
    local function flush()
      if #chunk == 0 then return end
      -- the prompt of the k-th prompted sample of a chunk samples from RNG
      -- stream k - 1; one rank (ctx.part) generates and emits its samples only
      local prompts, which, stream0 = {}, {}, nil
      local n_prompted = 0
      for k, c in ipairs(chunk) do
        if c.prompt then
          n_prompted = n_prompted + 1
          if mine(c.index) then
            stream0 = stream0 or n_prompted - 1
            prompts[#prompts + 1] = c.prompt; which[#which + 1] = k
          end
        end
      end
      local answers = {}
      if #prompts > 0 then
        -- one seed per chunk of 512 inputs
        local outs = m:generate(prompts, { max_tokens = p.max_tokens, temperature = p.temperature, top_p = p.top_p,
          seed = ctx.seed * 1000003 + (chunk[1].index - 1) // 512, batch = p.batch, stream0 = stream0 })
        for k, o in ipairs(outs) do answers[which[k]] = trim(o) end
      end
      for k, c in ipairs(chunk) do
        local a = answers[k]
        if not mine(c.index) then goto next end
        if a and a ~= "" then
          local s = c.sample
          local msgs = c.prompt
          msgs[#msgs + 1] = { role = "assistant", content = a }
          local out = {}
          for key, v in pairs(s) do out[key] = v end
          out.messages = msgs
          out.text = nil
          local prov = {}
          for key, v in pairs(type(s._prov) == "table" and s._prov or {}) do prov[key] = v end
          prov.teacher = name
          prov.distill_seed = ctx.seed
          prov.distill_index = c.index
          out._prov = prov
          emit(out)
        elseif p.empty == "keep" then
          emit(c.sample)
        else
          n_dropped = n_dropped + 1
        end
        ::next::
      end
      chunk = {}
    end
    for s in input() do
      n_in = n_in + 1
      chunk[#chunk + 1] = { sample = s, prompt = prompt_of(s), index = n_in }
      if #chunk >= 512 then flush() end -- fixed chunks: results do not depend on batch
    end
    flush()
    local n_mine = part and math.max(0, math.min(n_in, part.hi) - part.lo) or n_in
    ctx.log(string.format("distill: %d samples answered by %s, %d dropped (no user turn or empty answer)",
      n_mine - n_dropped, name, n_dropped))
  end,
}
