-- expect: fail instructions
string.find(string.rep("(", 200000), "%b()")
