"""Entry point of the ``marketlink`` command (Typer + Rich)."""

from __future__ import annotations

import typer

from marketlink import __version__
from marketlink.cli.connect_cmd import connect
from marketlink.cli.market_cmds import balance, book, ticker
from marketlink.cli.run_cmd import run
from marketlink.cli.sandbox_cmd import sandbox
from marketlink.cli.status_cmd import history, status

app = typer.Typer(
    name="marketlink",
    help="Exchange connectors for algorithmic traders, with a local sandbox exchange.",
    no_args_is_help=True,
    add_completion=False,
    # Never print a frame's locals with a traceback: here they hold API keys, secrets and the key
    # store password. Explicit, because Typer before 0.23 showed them by default.
    pretty_exceptions_show_locals=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"marketlink {__version__}")
        raise typer.Exit()


app.command(name="sandbox")(sandbox)
app.command(name="connect")(connect)
app.command(name="run")(run)
app.command(name="status")(status)
app.command(name="history")(history)
app.command(name="balance")(balance)
app.command(name="ticker")(ticker)
app.command(name="book")(book)


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """marketlink: exact, fast, tested exchange connectors."""


if __name__ == "__main__":
    app()
