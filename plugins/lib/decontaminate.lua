-- decontaminate.lua: decontaminate "ngram": drop training samples sharing
-- word n-grams (13 by default, as GPT-3's and lm-evaluation-harness's
-- decontamination) with evaluation texts.
local pl = require "potluck"

pl.register {
  api = 1,
  kind = "decontaminate",
  shard = "sample",
  name = "ngram",
  doc = "Index every n-gram of the eval files (lowercased words, punctuation stripped; a text shorter "
    .. "than n words is one gram), then drop samples with at least min_matches n-gram positions in "
    .. "the index. Eval files: JSONL (a line starting with '{' or '['; every string value in it is an "
    .. "eval text) or plain text (each line is an eval text), read with pl.lines.",
  params = {
    eval = { type = "files", required = true, doc = "eval sets: JSONL or text files" },
    n = { type = "integer", default = 13, min = 1, max = 1024, doc = "n-gram size in words" },
    min_matches = { type = "integer", default = 1, min = 1, doc = "shared n-grams that make a sample contaminated" },
  },
  each = function(p, ctx)
    local ix = pl.ngram_index { n = p.n }
    local lines = 0
    for _, path in ipairs(p.eval) do
      for line in pl.lines(path) do
        if line:match("^%s*[%[{]") then ix:add(line, "json") elseif line:match("%S") then ix:add(line) end
        lines = lines + 1
      end
    end
    if ctx.log then ctx.log(string.format("decontaminate: %d eval lines, %d distinct %d-grams", lines, ix:size(), p.n)) end
    return function(s)
      local count, first = ix:match(pl.text(s))
      if count >= p.min_matches then
        return false, string.format("%d shared %d-grams with the eval set, first: %q", count, p.n, first)
      end
      return true
    end
  end,
}
