"""`python -m autopeft.cli`: the `autopeft` command."""

from autopeft.cli.main import run

run()
