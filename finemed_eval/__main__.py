"""`python -m finemed_eval ...` = the `finemed` command, through whichever interpreter runs it."""

import sys

from finemed_eval.cli import main

sys.exit(main())
