"""`python -m autopeft.cli`: the `autopeft` command."""

import sys

from autopeft.cli.main import main

sys.exit(main())
