-- mode: load
-- expect: reject attempt to call a nil value
-- The file's top level runs in the same sandbox as its steps.
local f = load or loadstring or dofile
f("os.exit()")
