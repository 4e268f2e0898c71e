-- expect: fail instructions
for w in string.gmatch(string.rep("a", 100000), "(a-)-b") do end
