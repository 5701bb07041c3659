"""`python -m xlm_hf` is the `xlm-hf` command."""

import sys

from .cli import main

sys.exit(main())
