-- novelty.lua: filter "novelty": keep a sample only when its ROUGE-L with
-- every sample kept so far is below a threshold (Self-Instruct, Wang et al.
-- 2022, uses 0.7). Quadratic in the number of samples kept.
local pl = require "potluck"

pl.register {
  api = 1,
  kind = "filter",
  name = "novelty",
  doc = "Drop a sample whose text has ROUGE-L F-measure >= threshold with any sample this filter kept "
    .. "before (rouge_score's default tokenization: lowercase, [a-z0-9] runs, no stemming).",
  params = {
    threshold = { type = "number", default = 0.7, min = 0, max = 1, doc = "ROUGE-L at which a sample is not novel" },
  },
  each = function(p, ctx)
    local kept = {}
    -- several ranks: the ranks scored the pairs and rank 0 resolved them in
    -- index order into the decisions made here (docs/distributed.md):
    -- the kept sample's place among the kept ones and the ROUGE-L
    local decided, n = ctx.decision, 0
    return function(s)
      if decided then
        n = n + 1
        local k, f = decided(n)
        if k then return false, string.format("ROUGE-L %.3f >= %.2f with kept sample %d", f, p.threshold, k) end
        return true
      end
      local t = pl.text(s)
      for i = 1, #kept do
        local f = pl.rouge_l(kept[i], t)
        if f >= p.threshold then
          return false, string.format("ROUGE-L %.3f >= %.2f with kept sample %d", f, p.threshold, i)
        end
      end
      kept[#kept + 1] = t
      return true
    end
  end,
}
