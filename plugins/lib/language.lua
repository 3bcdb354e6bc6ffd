-- language.lua: filter "language": keep samples whose script or language
-- guess (pl.script: letters per Unicode script, a stop-word check for
-- English) is in an allow list.
local pl = require "potluck"

pl.register {
  api = 1,
  kind = "filter",
  shard = "sample",
  name = "language",
  doc = "Keep a sample when its language guess (en, latin, ja, zh, ko, ru, ar, el, he, hi, th, ...) or its "
    .. "dominant script (Latin, Cyrillic, Han, ...; case-insensitive) is in allow and that script holds "
    .. "at least min_share of the letters. Texts without letters are dropped unless allow has \"und\".",
  params = {
    allow = { type = "list", required = true, doc = "language codes or script names" },
    min_share = { type = "number", default = 0.5, min = 0, max = 1, doc = "minimum share of the dominant script" },
  },
  each = function(p, ctx)
    local ok = {}
    for _, a in ipairs(p.allow) do ok[string.lower(tostring(a))] = true end
    return function(s)
      local script, share, lang = pl.script(pl.text(s))
      if lang == "und" then
        if ok.und then return true end
        return false, "no letters to guess a language from"
      end
      if not (ok[lang] or ok[string.lower(script)]) then
        return false, string.format("language %s (script %s, %.2f of letters) not allowed", lang, script, share)
      end
      if share < p.min_share then
        return false, string.format("script %s holds %.2f of letters < min_share %.2f", script, share, p.min_share)
      end
      return true
    end
  end,
}
