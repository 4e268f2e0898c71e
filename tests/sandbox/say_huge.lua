-- expect: fail longer than
chat:say(string.rep("啊", 10000))
