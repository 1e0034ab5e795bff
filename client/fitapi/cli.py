"""The `fitapi` command."""


def main() -> None:
    raise SystemExit("fitapi: the command line is not built yet")
