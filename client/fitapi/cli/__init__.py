"""The `fitapi` command line (typer for commands and options, rich for progress and tables);
`main` is the console script."""

from fitapi.cli.main import app, main

__all__ = ["app", "main"]
