-- expect: fail error object is a table value
-- The engine never calls __tostring on an error object (it would be flow code outside the
-- budget); the failure is reported by type.
error(setmetatable({}, { __tostring = function() while true do end end }))
