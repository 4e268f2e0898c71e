-- expect: fail __gc metamethods are not allowed
-- An error object carrying a finalizer.
error(setmetatable({}, { __gc = function() while true do end end }))
