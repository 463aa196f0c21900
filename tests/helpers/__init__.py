"""What test modules share, by topic; fixtures are in tests/conftest.py, and test modules never
import one another.

servers   starting `python -m reactor_http` (REPO, SITE, MODES, ServerProcess, run_cli...)
http      raw-socket clients: requests, responses read off a socket, closes
procfs    what /proc says: CPU time, a supervisor's workers, /proc/net/tcp rows
sites     folders the server fixtures serve
respond   responder.respond called directly: requests from bytes, answers read as values
livereload  stalling a --live-reload stream
tls       a throwaway certificate
polling   wait_until: poll an observable condition with a deadline
"""
