-- tries: rawset on a required built-in module, around its read-only __newindex
-- how: check
-- expect: rawset: .*protected|rawset: table is read-only
rawset(require("genutil"), "trim", function() return "EVIL" end)
error("ESCAPED: rawset on a required module")
