-- expect: fail reason must be
chat:escalate("'; DROP TABLE tickets; --")
