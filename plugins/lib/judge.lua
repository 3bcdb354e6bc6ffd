-- judge.lua: LLM-as-judge filter: the model rates each (instruction,
-- response) pair with a prompt; a Lua pattern captures the score; samples
-- under min_score are dropped.
local pl = require "potluck"

-- Modeled on the common single-answer grading prompts (MT-Bench style, 1-10).
local DEFAULT_PROMPT = [==[
Please act as an impartial judge and evaluate the quality of the response an AI assistant gave to the user's question below. Consider its helpfulness, relevance, accuracy, depth and level of detail. Rate the response on a scale of 1 to 10 and reply with the rating only, as "Rating: N".

[Question]
{instruction}

[The Start of the Assistant's Answer]
{response}
[The End of the Assistant's Answer]]==]

-- (instruction, response) of a sample: the last user turn before the last
-- assistant turn, instruction/input + output, or "" and the text.
local function pair_of(s)
  if type(s.messages) == "table" then
    local a
    for i = #s.messages, 1, -1 do
      if s.messages[i].role == "assistant" then a = i; break end
    end
    if a then
      for i = a - 1, 1, -1 do
        if s.messages[i].role == "user" then return s.messages[i].content, s.messages[a].content end
      end
      return "", s.messages[a].content
    end
    return nil
  end
  if type(s.instruction) == "string" and type(s.output) == "string" then
    local q = s.instruction
    if type(s.input) == "string" and s.input ~= "" then q = q .. "\n\n" .. s.input end
    return q, s.output
  end
  return "", pl.text(s)
end

pl.register {
  api = 1,
  kind = "filter",
  shard = "sample",
  name = "llm_judge",
  doc = "LLM-as-judge: the model scores each sample's response with a prompt; keep samples scoring at least min_score.",
  params = {
    prompt = { type = "string", default = DEFAULT_PROMPT,
      doc = "judge prompt with {instruction} and {response} placeholders (sent as one user turn)" },
    model = { type = "string", default = "base", choices = { "base", "teacher" }, doc = "the judge" },
    min_score = { type = "number", default = 6, doc = "keep samples scoring at least this" },
    pattern = { type = "string", default = "(%d+)", doc = "Lua pattern whose first capture is the score" },
    unparsable = { type = "string", default = "drop", choices = { "drop", "keep" },
      doc = "what to do when the pattern finds no number in the judge's answer" },
    max_tokens = { type = "integer", default = 16, min = 1, doc = "new tokens of the judge's answer" },
    temperature = { type = "number", default = 0, min = 0, doc = "0: greedy (the default, reproducible)" },
  },
  each = function(p, ctx)
    if not p.prompt:find("{response}", 1, true) then error("llm_judge: prompt: expected a {response} placeholder", 0) end
    local ok, e = pcall(string.find, "", p.pattern)
    if not ok then error("llm_judge: pattern: " .. tostring(e), 0) end
    local m = p.model == "base" and ctx.model() or ctx.load_model(p.model)
    local n = ctx.offset or 0 -- the sample's index in the stage (one rank's part starts there)
    return function(s)
      n = n + 1
      local q, r = pair_of(s)
      if not r then return false, "llm_judge: no assistant turn to judge" end
      local text = p.prompt:gsub("{instruction}", function() return q end):gsub("{response}", function() return r end)
      local out = m:generate({ { { role = "user", content = text } } },
        { max_tokens = p.max_tokens, temperature = p.temperature, seed = ctx.seed * 1000003 + n })[1]
      local score = tonumber((out:match(p.pattern)))
      if not score then
        if p.unparsable == "keep" then return true end
        return false, "llm_judge: unparsable score: " .. (out:gsub("%s+", " "):sub(1, 60))
      end
      if score < p.min_score then return false, string.format("llm_judge: score %g < %g", score, p.min_score) end
      return true
    end
  end,
}
