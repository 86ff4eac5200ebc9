"""`python -m tsva.server [flags]`: the same as `tsva serve`."""
import sys

from tsva.server.cli import main

sys.exit(main())
