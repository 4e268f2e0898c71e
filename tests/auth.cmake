# Accounts, roles and logins (server/auth*.c, server/user_cli.c).
add_redress_unit(test_auth ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_auth.c)
add_redress_pytest(e2e_auth e2e/test_auth.py)
