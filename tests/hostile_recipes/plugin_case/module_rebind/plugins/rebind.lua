-- a plugin that tries to change what the built-in generators' shared helpers do
local U = require "genutil"
U.first_line = function() return "EVIL" end
