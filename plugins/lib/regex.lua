-- regex.lua: filter "regex": drop (or keep only) samples whose text matches
-- a PCRE2 pattern or contains any of a list of keywords.
local pl = require "potluck"

-- A keyword as a literal inside a PCRE2 pattern (\Q...\E, with \E itself split).
local function literal(k)
  return "\\Q" .. k:gsub("\\E", "\\E\\\\E\\Q") .. "\\E"
end

pl.register {
  api = 1,
  kind = "filter",
  shard = "sample",
  name = "regex",
  doc = "Match the sample's text against a PCRE2 pattern and/or a keyword list (any keyword matches, "
    .. "as a literal). mode = \"drop\" drops matching samples; mode = \"keep\" keeps only matching ones. "
    .. "Patterns run with PCRE2 match limits: a catastrophically backtracking pattern fails the stage "
    .. "with an error instead of hanging.",
  params = {
    pattern = { type = "string", doc = "PCRE2 pattern" },
    keywords = { type = "list", doc = "literal keywords; any one matches" },
    mode = { type = "string", default = "drop", choices = { "drop", "keep" }, doc = "drop or keep matching samples" },
    ignore_case = { type = "boolean", default = false, doc = "case-insensitive matching" },
    whole_words = { type = "boolean", default = false, doc = "keywords match whole words only (\\b around them)" },
    flags = { type = "string", default = "", doc = "extra PCRE2 flags: i m s x u (u: UTF-8 with Unicode properties)" },
  },
  each = function(p, ctx)
    local flags = (p.flags or "") .. (p.ignore_case and "i" or "")
    local res = {}
    if p.pattern then res[#res + 1] = { re = pl.regex(p.pattern, flags), what = "pattern" } end
    if p.keywords and #p.keywords > 0 then
      local alts = {}
      for i, k in ipairs(p.keywords) do alts[i] = literal(tostring(k)) end
      local pat = "(?:" .. table.concat(alts, "|") .. ")"
      if p.whole_words then pat = "\\b" .. pat .. "\\b" end
      res[#res + 1] = { re = pl.regex(pat, flags), what = "keyword" }
    end
    if #res == 0 then error("filter.regex: give a pattern or keywords", 0) end
    local keep_matching = p.mode == "keep"
    return function(s)
      local t = pl.text(s)
      for _, r in ipairs(res) do
        local a, b = r.re:find(t)
        if a then
          if keep_matching then return true end
          return false, string.format("%s match %q at %d", r.what, t:sub(a, math.min(b, a + 59)), a)
        end
      end
      if keep_matching then return false, "no match" end
      return true
    end
  end,
}
