-- tries: nothing hostile: the user lets the recipe read a folder outside with --allow-read (the read works)
-- how: check
-- flags: --allow-read @OUTSIDE@
-- expect: allowed read: canary: nothing may change this file
local pl = require "potluck"
assert(pl.file_exists("@OUTSIDE@/canary.txt"), "the allowed folder's file exists")
error("allowed read: " .. pl.read_file("@OUTSIDE@/canary.txt"):gsub("\n", ""))
