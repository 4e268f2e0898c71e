# Escalation and hand-off tests (issue 5): agent tables, the agent protocol, the console.
