-- tries: changing a nested table of a module another plugin shares (require returns views all the way down)
-- how: check
-- expect: cannot assign to field 'n' of a read-only table
local pl = require "potluck"
local shared = require "shared_opts"
assert(shared.opts.n == 1, "reads go through")
local seen = 0
for k, v in pairs(shared.opts) do seen = seen + 1 end
assert(seen == 1, "pairs sees the fields")
shared.opts.n = 2
error("ESCAPED: the nested table was changed")
