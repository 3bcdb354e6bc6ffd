-- tries: a backtracking string pattern (runs in C, between two VM instructions)
-- how: check
-- flags: --lua-instructions 4000000
-- expect: instruction limit of 4000000 exceeded \(in a string pattern function\)
return string.find(string.rep("a", 40), string.rep("a?", 40) .. string.rep("a", 40))
