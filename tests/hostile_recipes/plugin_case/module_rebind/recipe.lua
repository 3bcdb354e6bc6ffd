-- tries: a recipe plugin rebinding a field of a built-in module at load time (every generator would use it)
-- how: check
-- expect: plugins/rebind\.lua:[0-9]+: cannot assign to field 'first_line' of a read-only table
-- where: plugin
local pl = require "potluck"
return pl.recipe { name = "x", data = pl.pipeline { pl.source.lua { fn = function(ctx, emit) emit { text = "a" } end } } }
