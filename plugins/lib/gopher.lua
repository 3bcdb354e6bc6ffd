-- gopher.lua: filters "gopher_quality" and "gopher_repetition": the Gopher
-- rules (Rae et al. 2021) as datatrove's GopherQualityFilter and
-- GopherRepetitionFilter apply them (datasets/textqual.h states the small
-- differences). Two plugins in one file, one per rule family, so a recipe
-- may use either or both; every threshold is a parameter whose default is
-- the paper's number; a negative value turns that rule off.
local pl = require "potluck"

local function num(default, doc) return { type = "number", default = default, doc = doc } end

pl.register {
  api = 1,
  kind = "filter",
  shard = "sample",
  name = "gopher_quality",
  doc = "Gopher quality rules: word count, mean word length, '#' and ellipsis per word, bullet lines, "
    .. "ellipsis-ending lines, share of words with a letter, English stop words. The reason names the "
    .. "rule (datatrove's names) and the measured value.",
  params = {
    min_words = { type = "integer", default = 50, doc = "minimum words with a non-punctuation character" },
    max_words = { type = "integer", default = 100000, doc = "maximum such words" },
    min_mean_word_len = num(3, "minimum mean word length (characters)"),
    max_mean_word_len = num(10, "maximum mean word length"),
    max_symbol_word_ratio = num(0.1, "maximum '#' per word and '...'/'…' per word"),
    max_bullet_lines_ratio = num(0.9, "maximum share of lines starting with '•' or '-'"),
    max_ellipsis_lines_ratio = num(0.3, "maximum share of lines ending with '...' or '…'"),
    min_alpha_words_ratio = num(0.8, "minimum share of words with an alphabetic character"),
    min_stop_words = { type = "integer", default = 2, doc = "minimum count of: the be to of and that have with" },
  },
  each = function(p, ctx)
    local o = { rules = "quality" }
    for k, v in pairs(p) do o[k] = v end
    return function(s)
      return pl.gopher(pl.text(s), o)
    end
  end,
}

pl.register {
  api = 1,
  kind = "filter",
  shard = "sample",
  name = "gopher_repetition",
  doc = "Gopher repetition rules: duplicate lines and paragraphs (by count and by characters), the "
    .. "characters of the most frequent 2-, 3-, 4-gram, and the characters in duplicated 5..10-grams.",
  params = {
    dup_line_frac = num(0.3, "maximum share of duplicate lines"),
    dup_para_frac = num(0.3, "maximum share of duplicate paragraphs"),
    dup_line_char_frac = num(0.2, "maximum share of characters in duplicate lines"),
    dup_para_char_frac = num(0.2, "maximum share of characters in duplicate paragraphs"),
    top_ngram_frac = { type = "list", default = { 0.20, 0.18, 0.16 },
                       doc = "maximum character share of the top 2-, 3-, 4-gram" },
    dup_ngram_frac = { type = "list", default = { 0.15, 0.14, 0.13, 0.12, 0.11, 0.10 },
                       doc = "maximum character share of duplicated 5-, 6-, ..., 10-grams" },
  },
  each = function(p, ctx)
    local o = { rules = "repetition" }
    for k, v in pairs(p) do o[k] = v end
    return function(s)
      return pl.gopher(pl.text(s), o)
    end
  end,
}
