# Crash and load safety end-to-end tests (tests/e2e/test_soak.py), included by
# tests/CMakeLists.txt: thousands of idle sockets and slowloris clients beside live chats,
# malformed frames and HTTP requests, kill -9 rounds with an integrity check after each.
add_redress_pytest(e2e_soak e2e/test_soak.py)
