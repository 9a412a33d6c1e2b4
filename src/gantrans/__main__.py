"""`python -m gantrans` (and `torchrun -m gantrans`) runs the same CLI as the console script."""

import sys

from gantrans.cli import main

sys.exit(main())
