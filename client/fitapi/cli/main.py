"""The root `fitapi` command: global options (server, key, output), the sub-commands, and the
one place where errors become a message on stderr and an exit code, never a traceback."""

from __future__ import annotations

import os
import sys
from typing import Annotated, Any

import httpx
import typer
from typer.core import TyperGroup

from fitapi import __version__
from fitapi.cli import datasets, jobs, models, render, training
from fitapi.cli.state import ExitCode, Output, State
from fitapi.errors import ApiError, EventStreamError, FitapiError, JobCancelled, JobFailed

# The client's other errors: their exit code and the `type` of the JSON document's detail.
OTHER_ERRORS: dict[type[FitapiError], tuple[ExitCode, str]] = {
    JobFailed: (ExitCode.JOB_FAILED, "job_failed"),
    JobCancelled: (ExitCode.JOB_CANCELLED, "job_cancelled"),
    EventStreamError: (ExitCode.EVENTS_LOST, "event_stream_ended"),
}


class Root(TyperGroup):
    """Turns the errors a command can meet into their exit codes."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except ApiError as exc:
            document = {"status": exc.status, "detail": exc.detail, "request_id": exc.request_id}
            fail(ctx, ExitCode.API_ERROR, render.error_lines(exc.status, exc.detail), document)
        except httpx.TransportError as exc:
            url = ctx.obj.client.url if isinstance(ctx.obj, State) else ""
            detail = [{"loc": [], "msg": str(exc), "type": "unreachable"}]
            fail(
                ctx,
                ExitCode.UNREACHABLE,
                [f"error: no answer from {url}: {exc}"],
                {"status": None, "detail": detail},
            )
        except FitapiError as exc:
            code, kind = next(
                (v for t, v in OTHER_ERRORS.items() if isinstance(exc, t)),
                (ExitCode.INTERNAL, "client_error"),
            )
            detail = [{"loc": [], "msg": str(exc), "type": kind}]
            fail(ctx, code, [f"error: {exc}"], {"status": None, "detail": detail})


def fail(ctx: Any, code: ExitCode, lines: list[str], document: dict[str, Any]) -> None:
    st = ctx.obj if isinstance(ctx.obj, State) else State(url=None, api_key=None)
    for line in lines:
        st.err.print(line, style="red", soft_wrap=True, markup=False)
    if st.json:
        render.emit_json(st, {"error": document})
    raise typer.Exit(code)


app = typer.Typer(
    cls=Root,
    name="fitapi",
    help="fitapi from the command line: datasets, models, fit with live progress, jobs, predict.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def version(value: bool) -> None:
    if value:
        typer.echo(f"fitapi {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(
            envvar="FITAPI_URL",
            show_default=False,
            help="The server (default http://127.0.0.1:8000)",
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="FITAPI_API_KEY", show_default=False, help="The API key (sent as a Bearer token)"
        ),
    ] = None,
    output: Annotated[
        Output,
        typer.Option(
            "--output",
            "-o",
            envvar="FITAPI_OUTPUT",
            help="table or json; each command takes it too",
        ),
    ] = Output.table,
    _version: Annotated[
        bool,
        typer.Option(
            "--version", callback=version, is_eager=True, help="Print the version and exit"
        ),
    ] = False,
) -> None:
    st = State(url=url, api_key=api_key, output=output)
    ctx.obj = st
    ctx.call_on_close(st.close)


app.add_typer(datasets.app, name="datasets")
app.add_typer(models.app, name="models")
app.command()(training.fit)
app.command()(training.predict)
app.add_typer(jobs.app, name="jobs")


def main(argv: list[str] | None = None) -> None:
    """The console script: exits with the code the command chose (see ExitCode)."""
    try:
        app(args=argv, prog_name="fitapi")
    except Exception as exc:  # a bug: said in one line, the traceback only on request
        if os.environ.get("FITAPI_DEBUG"):
            raise
        print(
            f"fitapi: internal error: {type(exc).__name__}: {exc} (FITAPI_DEBUG=1 shows where)",
            file=sys.stderr,
        )
        sys.exit(ExitCode.INTERNAL)
