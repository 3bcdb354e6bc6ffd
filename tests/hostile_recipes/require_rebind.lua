-- tries: rebinding a field of a built-in module (genutil, shared by the built-in generators)
-- how: check
-- expect: cannot assign to field 'first_line' of a read-only table
require("genutil").first_line = function() return "EVIL" end
error("ESCAPED: the built-in module was changed")
