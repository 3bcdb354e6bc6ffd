-- tries: telling "outside" from "missing" with pl.file_exists and read errors (existence probe)
-- how: check
-- expect: probe: every path outside got the same answer
local pl = require "potluck"
local outside = { "@OUTSIDE@/canary.txt", "@OUTSIDE@/no-such-file", "/etc/passwd", "/no/such/dir/x",
                  "../outside/canary.txt", ".ssh/id_ed25519", ".ssh/missing" }
for _, p in ipairs(outside) do
  if pl.file_exists(p) then error("ESCAPED: file_exists(" .. p .. ") is true") end
  local ok, msg = pcall(pl.read_file, p)
  if ok or not tostring(msg):find("reads must stay inside", 1, true) then
    error("ESCAPED: read_file(" .. p .. ") answered: " .. tostring(msg))
  end
end
assert(pl.file_exists("exists_probe.lua"), "a file of the recipe folder exists")
assert(not pl.file_exists("no-such-file-here"), "a missing file inside does not")
error("probe: every path outside got the same answer")
