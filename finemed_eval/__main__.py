"""`python -m finemed_eval ...` = the `finemed` command, through whichever interpreter runs it."""

import sys

from finemed_eval.cli import main

if __name__ == "__main__":  # vLLM's engine core is a spawned process that re-imports this module
    sys.exit(main())
