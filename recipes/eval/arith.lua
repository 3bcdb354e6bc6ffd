-- arith.lua: a generative eval task (docs/eval.md, "Generative tasks"):
-- small arithmetic questions in the model's chat template, answered
-- greedily, scored by the last number of the answer.
--   potluck eval SmolLM2-135M-Instruct --task recipes/eval/arith.lua
local pl = require "potluck"

return pl.task {
  name = "arith",
  items = "arith.jsonl",                          -- relative to this file
  fields = { input = "question", target = "answer" },
  prompt = "chat",                                -- the model's chat template; "raw": plain text
  template = "{input} Answer with the number only.",
  generate = { max_tokens = 12, stop = { "\n" } },  -- greedy unless temperature > 0
  scorer = pl.scorer.numeric { abs = 1e-6 },
}
