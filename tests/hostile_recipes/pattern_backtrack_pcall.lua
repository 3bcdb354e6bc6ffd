-- tries: catching the pattern budget error with pcall and matching again
-- how: check
-- flags: --lua-instructions 4000000
-- expect: instruction limit of 4000000 exceeded
local p = string.rep("a?", 40) .. string.rep("a", 40)
for i = 1, 100 do pcall(string.gsub, string.rep("a", 40), p, "x") end
