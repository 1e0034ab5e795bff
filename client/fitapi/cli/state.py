"""What every command shares: the exit codes, the output mode, the server and key from the root
command's options, and the client and consoles built from them on first use."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

if TYPE_CHECKING:
    from fitapi.client import Client


class ExitCode(IntEnum):
    """The command's exit status (documented in README "The command line")."""

    OK = 0
    JOB_FAILED = 1  # the job ended `failed`
    USAGE = 2  # bad options or arguments, a file that cannot be read or written
    JOB_CANCELLED = 3  # the job ended `cancelled`
    API_ERROR = 4  # the server refused the request (4xx, or 5xx after retries)
    UNREACHABLE = 5  # no answer from the server (after retries)
    EVENTS_LOST = 6  # a followed job's event stream kept ending early; the job goes on
    INTERNAL = 70  # a bug in the command line itself
    INTERRUPTED = 130  # Ctrl-C: a followed job keeps running


class Output(StrEnum):
    table = "table"
    json = "json"


OutputOption = Annotated[
    Output | None,
    typer.Option(
        "--output",
        "-o",
        help="table (for people) or json (one JSON document on stdout)",
        show_default=False,
    ),
]


@dataclass
class State:
    url: str | None
    api_key: str | None
    output: Output = Output.table
    _client: Client | None = field(default=None, repr=False)
    _out: Console | None = field(default=None, repr=False)
    _err: Console | None = field(default=None, repr=False)

    @property
    def json(self) -> bool:
        return self.output is Output.json

    @property
    def client(self) -> Client:
        if self._client is None:
            from fitapi.client import Client

            self._client = Client(self.url, self.api_key)
        return self._client

    @property
    def out(self) -> Console:
        """stdout: the result (tables, epoch lines, or the one JSON document)."""
        if self._out is None:
            self._out = wide(Console(highlight=False))
        return self._out

    @property
    def err(self) -> Console:
        """stderr: errors, notes and live progress."""
        if self._err is None:
            self._err = wide(Console(stderr=True, highlight=False))
        return self._err

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def wide(console: Console) -> Console:
    """Captured output (a pipe, a file) gets 160 columns rather than rich's 80, so that tables
    of ids stay readable; COLUMNS still wins."""
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 160
    return console


def state(ctx: typer.Context, output: Output | None = None) -> State:
    """The root command's State; a command's own `--output` wins over the root's."""
    root = ctx.find_root()
    st = root.obj
    if not isinstance(st, State):  # a command invoked without the root callback (tests)
        st = root.obj = State(url=None, api_key=None)
    if output is not None:
        st.output = output
    return st
