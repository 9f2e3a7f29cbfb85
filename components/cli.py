"""``haai``: offline commands over the real program. No cloud, no cluster, no Pulumi CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from .capture import StackNotFoundError, capture_stack, default_project_root
from .config import ConfigError
from .render import manifests, summary, write_manifests

app = typer.Typer(help="Offline tools for ha-ai-stack: render stacks without a cloud or cluster.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
EXIT_USAGE = 2

StackOption = Annotated[str, typer.Option("--stack", "-s", help="Stack name: stacks/Pulumi.<name>.yaml.")]
ProjectOption = Annotated[
    Optional[Path], typer.Option("--project-dir", help="Project root (default: nearest Pulumi.yaml upwards).")
]


@app.callback()
def main() -> None:
    """Offline tools for ha-ai-stack."""


@app.command()
def render(
    stack: StackOption,
    out: Annotated[Optional[Path], typer.Option(help="Directory for manifests (default: rendered/<stack>).")] = None,
    project_dir: ProjectOption = None,
    preview: Annotated[bool, typer.Option(help="Run as a preview: computed values stay unknown.")] = False,
) -> None:
    """Run the stack's program under mocks and write one YAML manifest per Kubernetes object."""
    console = Console(width=None if Console().is_terminal else 140)
    try:
        root = project_dir or default_project_root()
        capture = capture_stack(stack, project_root=root, preview=preview)
    except (StackNotFoundError, ConfigError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    objects = manifests(capture)
    target = out or root / "rendered" / stack
    write_manifests(objects, target)
    table = Table(title=f"stack {stack}: {len(objects)} objects -> {target}")
    for column in ("kind", "name", "replicas", "HA features"):
        table.add_column(column)
    for row in summary(objects):
        table.add_row(row.kind, row.name, row.replicas, row.features)
    console.print(table)
if __name__ == "__main__":
    app()
