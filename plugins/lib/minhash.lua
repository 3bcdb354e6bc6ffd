-- minhash.lua: dedup "minhash": near-duplicate removal with MinHash LSH
-- (datasets/minhash.h: shingles, permutations, bands and where the defaults
-- come from).
local pl = require "potluck"

pl.register {
  api = 1,
  kind = "dedup",
  name = "minhash",
  doc = "Drop a sample whose estimated Jaccard similarity (MinHash over word or character n-gram "
    .. "shingles) with an earlier kept sample is at least threshold; candidates come from LSH bands. "
    .. "Defaults: word 5-grams and 128 permutations (datatrove uses word 5-grams with 14 x 8 = 112, NeMo "
    .. "Curator char 24-grams with 20 x 13 = 260); bands x rows chosen from the threshold as datasketch does.",
  params = {
    threshold = { type = "number", default = 0.8, min = 0, max = 1, doc = "estimated Jaccard of a duplicate" },
    num_perm = { type = "integer", default = 128, min = 1, max = 4096, doc = "MinHash permutations" },
    bands = { type = "integer", min = 1, doc = "LSH bands (with rows; default: chosen from threshold)" },
    rows = { type = "integer", min = 1, doc = "rows per band (with bands)" },
    ngram = { type = "integer", default = 5, min = 1, max = 1024, doc = "shingle size in units" },
    unit = { type = "string", default = "word", choices = { "word", "char" }, doc = "shingle unit" },
    seed = { type = "integer", default = 1, doc = "permutation seed" },
  },
  each = function(p, ctx)
    if (p.bands == nil) ~= (p.rows == nil) then error("dedup.minhash: give both bands and rows, or neither", 0) end
    local idx = pl.minhash_index {
      threshold = p.threshold, num_perm = p.num_perm, bands = p.bands, rows = p.rows,
      ngram = p.ngram, unit = p.unit, seed = p.seed,
    }
    -- several ranks: the decisions were made by band ownership over the
    -- ranks (docs/distributed.md) and are the ones check_add would make
    local decided, n = ctx.decision, 0
    return function(s)
      local dup, j
      if decided then
        n = n + 1
        dup, j = decided(n)
      else
        dup, j = idx:check_add(pl.text(s))
      end
      if dup then
        return false, string.format("near-duplicate of sample %d (estimated Jaccard %.2f)", dup, j)
      end
      return true
    end
  end,
}
