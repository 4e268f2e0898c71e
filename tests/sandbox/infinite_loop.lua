-- expect: fail instructions
while true do end
