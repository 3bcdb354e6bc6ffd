-- a benign module with a nested table, shared by whoever requires it
return { opts = { n = 1 } }
