-- tries: a recipe saved in a home-like folder reading a key from its .ssh/ (made by the test)
-- how: check
-- expect: '\.ssh/id_ed25519': reads must stay inside the recipe directory \(not its dot-files
local pl = require "potluck"
error("ESCAPED: " .. pl.read_file(".ssh/id_ed25519"))
