"""`python -m tinythinker_ray <command> ...` is `tinythinker <command> ...`."""

import sys

from .cli import main

sys.exit(main())
