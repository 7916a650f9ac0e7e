"""`python -m tl_keras.cli ...` runs the `tl-keras` command."""

import sys

from tl_keras.cli.commands import main

sys.exit(main())
