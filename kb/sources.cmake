# Knowledge-base sources, linked into redress_core (kb/README.md describes each file).
set(REDRESS_KB_SOURCES
  kb/kb_token.c
  kb/kb_synonyms.c
  kb/kb_schema.c
  kb/kb_store.c
  kb/kb_search.c
  kb/kb_doccache.c
  kb/kb_memidx.c
  kb/kb_api.c
  kb/kb_io.c
  kb/kb_cli.c
)
