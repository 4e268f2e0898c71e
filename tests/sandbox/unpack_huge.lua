-- expect: fail too many results
local t = table.unpack({}, 1, 1e8)
