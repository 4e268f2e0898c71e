# Webhook tests (issue 6): the outbox, signatures and deliveries (server/webhook*.c).
#
#   test_webhook   signatures (RFC 4231 vectors), backoff, URL/event/secret checks, the tables
#                  on a real SQLite file, emit through a real store
#   e2e_webhook    real deliveries from the real server to a Python HTTP receiver on
#                  127.0.0.1: signature, headers, body, retries with backoff, a receiver that
#                  is down, a server restart with deliveries pending, the CLI
add_redress_unit(test_webhook ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_webhook.c)
add_redress_pytest(e2e_webhook e2e/test_webhook.py)
