-- length.lua: filter "length": drop samples whose text is shorter or longer
-- than limits in characters (UTF-8 code points) and, when min_tokens or
-- max_tokens is given, in tokens of the base model's tokenizer.
local pl = require "potluck"

pl.register {
  api = 1,
  kind = "filter",
  shard = "sample",
  name = "length",
  doc = "Drop samples whose text (pl.text) has fewer than min_chars or more than max_chars characters, "
    .. "or fewer than min_tokens or more than max_tokens tokens of the base model's tokenizer "
    .. "(the tokenizer is loaded only when a token limit is given).",
  params = {
    min_chars = { type = "integer", default = 0, min = 0, doc = "minimum characters (UTF-8 code points)" },
    max_chars = { type = "integer", min = 0, doc = "maximum characters (none when absent)" },
    min_tokens = { type = "integer", min = 0, doc = "minimum tokens (none when absent)" },
    max_tokens = { type = "integer", min = 0, doc = "maximum tokens (none when absent)" },
  },
  each = function(p, ctx)
    local tok
    if p.min_tokens or p.max_tokens then tok = ctx.tokenizer() end
    local min_chars = p.min_chars or 0
    return function(s)
      local t = pl.text(s)
      local n = utf8.len(t) or #t
      if n < min_chars then return false, string.format("%d chars < min_chars %d", n, min_chars) end
      if p.max_chars and n > p.max_chars then
        return false, string.format("%d chars > max_chars %d", n, p.max_chars)
      end
      if tok then
        local k = tok:count(t)
        if p.min_tokens and k < p.min_tokens then
          return false, string.format("%d tokens < min_tokens %d", k, p.min_tokens)
        end
        if p.max_tokens and k > p.max_tokens then
          return false, string.format("%d tokens > max_tokens %d", k, p.max_tokens)
        end
      end
      return true
    end
  end,
}
