"""`python -m sunkbridge` runs the `sunk` command."""

from sunk_cli.main import main

main()
