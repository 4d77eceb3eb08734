"""`python -m workerstate.server`: run the daemon (the same as `workerstate serve`)."""

import sys

from .main import serve_main

sys.exit(serve_main())
