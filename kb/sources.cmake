# Knowledge-base sources, linked into redress_core.
set(REDRESS_KB_SOURCES
)
