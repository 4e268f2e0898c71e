-- mode: load
-- expect: reject instructions
-- A flow file whose top level never ends is refused at load time; the old rules stay.
while true do end
