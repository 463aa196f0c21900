"""`python -m reactor_http`: the command line."""

from .cli import main

raise SystemExit(main())
