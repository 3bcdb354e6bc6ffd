-- perplexity.lua: drop samples whose perplexity under the base (or teacher)
-- model is above max_ppl (or below min_ppl): per-token mean NLL, exponentiated.
local pl = require "potluck"

pl.register {
  api = 1,
  kind = "filter",
  shard = "sample",
  name = "perplexity",
  doc = "Keep samples whose model perplexity (of pl.text(s)) lies in [min_ppl, max_ppl].",
  params = {
    max_ppl = { type = "number", min = 1, doc = "drop samples above this perplexity" },
    min_ppl = { type = "number", min = 0, doc = "drop samples below this perplexity (e.g. repeated boilerplate)" },
    model = { type = "string", default = "base", choices = { "base", "teacher" }, doc = "the scoring model" },
  },
  each = function(p, ctx)
    if not p.max_ppl and not p.min_ppl then error("perplexity: give max_ppl, min_ppl or both", 0) end
    if p.max_ppl and p.min_ppl and p.min_ppl > p.max_ppl then
      error(string.format("perplexity: min_ppl %g is above max_ppl %g", p.min_ppl, p.max_ppl), 0)
    end
    local m = p.model == "base" and ctx.model() or ctx.load_model(p.model)
    return function(s)
      local ppl = m:perplexity(pl.text(s))
      if p.max_ppl and ppl > p.max_ppl then
        return false, string.format("perplexity %.1f > max_ppl %g", ppl, p.max_ppl)
      end
      if p.min_ppl and ppl < p.min_ppl then
        return false, string.format("perplexity %.1f < min_ppl %g", ppl, p.min_ppl)
      end
      return true
    end
  end,
}
