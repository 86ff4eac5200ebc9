"""`python -m tsva.server [flags]`: the same as `tsva serve`."""
import sys

from tsva.server.verbs.serve import main

sys.exit(main())
