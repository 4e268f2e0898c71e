-- expect: fail has no timer named
chat:after(10, "nope")
