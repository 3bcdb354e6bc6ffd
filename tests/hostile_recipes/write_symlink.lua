-- tries: write through a symlink the test planted in the run directory (runs/write_symlink/evil -> outside/canary.txt)
-- how: run
-- expect: this step writes nothing
-- (the recipe's top level runs in the plan step, which may write nothing at all; a symlink
-- leading out of a stage's folder is refused by the sandbox too: tests/test_sandbox.c)
local pl = require "potluck"
pl.write_file("../runs/write_symlink/evil", "pwned")
error("ESCAPED: wrote through the symlink")
