"""Entry point of the ``marketlink`` command (Typer + Rich)."""

from __future__ import annotations

import typer

from marketlink import __version__
from marketlink.cli.connect_cmd import connect
from marketlink.cli.sandbox_cmd import sandbox

app = typer.Typer(
    name="marketlink",
    help="Exchange connectors for algorithmic traders, with a local sandbox exchange.",
    no_args_is_help=True,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"marketlink {__version__}")
        raise typer.Exit()


app.command(name="sandbox")(sandbox)
app.command(name="connect")(connect)


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """marketlink: exact, fast, tested exchange connectors."""


@app.command()
def run(
    duration: float = typer.Option(30.0, "--duration", min=0.1, help="Seconds to run."),
    seed: int = typer.Option(7, "--seed", help="Seed of the simulated market."),
) -> None:
    """Run the main job on the embedded sandbox."""
    from marketlink.cli.demo import run_demo

    raise typer.Exit(run_demo(duration=duration, seed=seed))
