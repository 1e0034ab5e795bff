"""`python -m fitapi.cli`."""

from fitapi.cli.main import main

main()
