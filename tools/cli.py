"""``haai``: offline commands over the real program. No cloud, no cluster, no Pulumi CLI."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Optional

import pulumi
import typer
import yaml
from rich.console import Console
from rich.table import Table

from .capture import Capture, Project, StackNotFoundError, capture_stack, default_project_root
from ha_ai_stack.config import stack_file_config, validate_stack_config
from ha_ai_stack.errors import ConfigError
from .policy_check import Finding, check_capture
from .preflight import Check
from .render import OutputDirError, manifests, summary, write_manifests

app = typer.Typer(help="Offline tools for ha-ai-stack: render stacks without a cloud or cluster.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
EXIT_USAGE = 2
EXIT_VIOLATIONS = 1
EXIT_RISKY = 3

StackOption = Annotated[str, typer.Option("--stack", "-s", help="Stack name: stacks/Pulumi.<name>.yaml.")]
ProjectOption = Annotated[
    Optional[Path], typer.Option("--project-dir", help="Project root (default: nearest Pulumi.yaml upwards).")
]


@app.callback()
def main() -> None:
    """Offline tools for ha-ai-stack."""


@contextmanager
def _usage_errors(*errors: type[Exception]) -> Iterator[None]:
    """Print an expected error (missing stack, bad config, bad base) as one line and exit 2."""
    try:
        yield
    except errors as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(EXIT_USAGE) from None


def _capture_or_exit(stack: str, project_dir: Optional[Path], preview: bool = False,
                     redis_overrides: dict[str, Any] | None = None) -> tuple[Path, Capture]:
    """Capture a stack, or print the stack/config error and exit 2."""
    # ConfigError and the capture's DuplicateResourceError are pulumi.RunErrors: messages for the user.
    with _usage_errors(StackNotFoundError, pulumi.RunError):
        root = project_dir or default_project_root()
        return root, capture_stack(stack, project_root=root, preview=preview, redis_overrides=redis_overrides)


@app.command()
def render(
    stack: StackOption,
    out: Annotated[Optional[Path], typer.Option(help="Directory for manifests (default: rendered/<stack>).")] = None,
    project_dir: ProjectOption = None,
    preview: Annotated[bool, typer.Option(help="Run as a preview: computed values stay unknown.")] = False,
    prune: Annotated[bool, typer.Option(help="Allow deleting more than half of the manifests in --out.")] = False,
) -> None:
    """Run the stack's program under mocks and write one YAML manifest per Kubernetes object."""
    root, capture = _capture_or_exit(stack, project_dir, preview)
    objects = manifests(capture)
    target = out or root / "rendered" / stack
    with _usage_errors(OutputDirError):
        write_manifests(objects, target, prune=prune)
    rows = [(row.kind, row.name, row.replicas, row.features) for row in summary(objects)]
    rows += [(r.type_token.rsplit(":", 1)[1], r.name, "", "AWS (not a manifest)")
             for r in capture.resources if r.custom and r.type_token.startswith("aws:")]
    _print_table(f"stack {stack}: {len(objects)} objects -> {target}", ("kind", "name", "replicas", "HA features"), rows)
def _console() -> Console:
    return Console(width=None if Console().is_terminal else 140)


def _print_table(title: str, columns: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    _console().print(table)


def _cell(text: str) -> str:
    """Text that cannot break a Markdown table row."""
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(stack: str, findings: list[Finding]) -> str:
    """The findings as one Markdown table for a pull-request comment."""
    mandatory = sum(f.level == "mandatory" for f in findings)
    lines = [f"### Policy check: stack `{stack}`", "",
             f"{len(findings)} findings, {mandatory} mandatory.", ""]
    if findings:
        lines += ["| policy | resource | level | message |", "|---|---|---|---|"]
        lines += [f"| `{f.policy}` | `{f.resource}` | {f.level} | {_cell(f.message)} |" for f in findings]
    return "\n".join(lines)


@app.command()
def check(
    stack: StackOption,
    output_format: Annotated[str, typer.Option("--format", help="table or markdown.")] = "table",
    project_dir: ProjectOption = None,
    pack_dir: Annotated[Optional[Path], typer.Option(help="Policy pack (default: <project>/policies).")] = None,
) -> None:
    """Render the stack offline and run the policy pack over it with its tier's config; exit 1 on a mandatory violation."""
    if output_format not in ("table", "markdown"):
        typer.echo("error: --format must be table or markdown", err=True)
        raise typer.Exit(EXIT_USAGE)
    root, capture = _capture_or_exit(stack, project_dir)
    findings = check_capture(capture, pack_dir or root / "policies", str(capture.exports["tier"]))
    if output_format == "markdown":
        typer.echo(markdown_table(stack, findings))
    else:
        _print_table(f"stack {stack}: {len(findings)} policy findings", ("policy", "resource", "level", "message"),
                     [(f.policy, f.resource, f.level, f.message) for f in findings])
    if any(f.level == "mandatory" for f in findings):
        raise typer.Exit(EXIT_VIOLATIONS)


@app.command()
def preflight(
    stack: StackOption,
    project_dir: ProjectOption = None,
    region: Annotated[Optional[str], typer.Option(help="AWS region (default: the AWS environment's).")] = None,
    aws: Annotated[bool, typer.Option(help="Check GPU capacity in AWS.")] = True,
    cluster: Annotated[bool, typer.Option(help="Check the live cluster for the declared prerequisites.")] = True,
    context: Annotated[Optional[str], typer.Option(help="kubeconfig context (default: the current one).")] = None,
) -> None:
    """Check before a deploy: GPU capacity in AWS (zones, offerings, GPUs per node, cluster, vCPU quota) and
    the live cluster (declared prerequisites, CRDs, metrics APIs, GPU nodes).

    Uses the usual AWS environment and kubeconfig. Exits 1 when any check fails.
    """
    with _usage_errors(StackNotFoundError, ConfigError):
        project = Project.load(project_dir or default_project_root())
        config = validate_stack_config(stack_file_config(project.stack_config(stack), stack))
    checks = []
    if aws:
        import boto3

        from .preflight import preflight as run_preflight

        session = boto3.Session(region_name=region)
        checks += run_preflight(config, session.client)
    if cluster:
        from .cluster_preflight import api_client, cluster_preflight

        try:
            api = api_client(context)
        except Exception as error:  # noqa: BLE001 (no kubeconfig, bad context: one line, not a traceback)
            checks.append(Check("cluster", "reachable", "unknown", f"no usable kubeconfig: {error}"))
        else:
            checks += cluster_preflight(config, api)
    _print_table(f"stack {stack}: preflight", ("subject", "check", "status", "detail"),
                 [(c.subject, c.check, c.status, c.detail) for c in checks])
    if any(c.status == "fail" for c in checks):
        raise typer.Exit(EXIT_VIOLATIONS)


@app.command()
def restore(
    stack: StackOption,
    backup: Annotated[str, typer.Option(help="The backup's UTC timestamp (YYYYMMDDTHHMMSSZ) under the stack's "
                                             "backup prefix, or a whole s3://.../<timestamp> URI.")],
    out: Annotated[Optional[Path], typer.Option(help="Also write the restore's manifests here.")] = None,
    project_dir: ProjectOption = None,
) -> None:
    """Print the steps that restore a Redis backup into a NEW cluster of the stack, and render its restore Job."""
    root = project_dir or default_project_root()
    with _usage_errors(StackNotFoundError):
        section = Project.load(root).stack_config(stack).get("haai:redis", {})
    uri = backup
    if not backup.startswith("s3://"):
        if not isinstance(section.get("backup"), dict) or "bucket" not in section["backup"]:
            typer.echo(f"error: stack {stack} has no redis.backup section: pass the whole s3:// URI", err=True)
            raise typer.Exit(EXIT_USAGE)
        uri = f"s3://{section['backup']['bucket']}/{section['backup'].get('prefix', 'redis-backups')}/redis/{backup}"
    _, capture = _capture_or_exit(stack, root, redis_overrides={"restore_from": uri})
    objects = manifests(capture)
    [job] = [o for o in objects if o["kind"] == "Job" and o["metadata"]["name"].startswith("redis-restore-")]
    namespace = job["metadata"]["namespace"]
    if out is not None:
        with _usage_errors(OutputDirError):
            write_manifests(objects, out, prune=True)
    typer.echo(restore_steps(stack, uri, namespace, job["metadata"]["name"]))
    typer.echo("# The restore Job that verifies the backup before any member starts:\n---")
    typer.echo(yaml.safe_dump(job, sort_keys=False))


def restore_steps(stack: str, uri: str, namespace: str, job: str) -> str:
    """The documented procedure, with this stack's names filled in."""
    return f"""# Restore {uri} into a NEW Redis Cluster of stack {stack} (same shard count).
# A restore never loads into a formed cluster: the restore Job refuses (exit 7) and members that hold
# data ignore it. To replace the current data, remove the cluster first (its PVCs are kept on purpose):
#   pulumi destroy --stack {stack} --target-dependents \\
#     --target "$(pulumi stack --stack {stack} --show-urns | grep -o 'urn:[^ ]*RedisCluster::redis')"
#   kubectl -n {namespace} delete pvc -l app.kubernetes.io/instance=redis
# 1. Name the backup in the stack config, and deploy:
#      pulumi config set --stack {stack} --path 'haai:redis.restore_from' {uri}
#      pulumi up --stack {stack}
#    The Job {job} checks the manifest, the shard count and every checksum, and that the cluster is new;
#    only then do the members start. Each shard's home master loads its RDB as its AOF base, and the
#    bootstrap Job forms the cluster around the restored slots. Replicas sync from their masters.
# 2. Check: kubectl -n {namespace} logs job/{job}; every key count in INFO keyspace.
# 3. Remove restore_from again (members with data ignore it, so leaving it is harmless, but a later new
#    cluster would load this backup):
#      pulumi config rm --stack {stack} --path 'haai:redis.restore_from' && pulumi up --stack {stack}
"""


@app.command()
def diff(
    base: Annotated[str, typer.Option(help="Git revision to compare against, e.g. origin/main.")],
    stack: Annotated[Optional[str], typer.Option("--stack", "-s", help="One stack.")] = None,
    all_stacks: Annotated[bool, typer.Option("--all-stacks", help="Every stack in stacks/.")] = False,
    output_format: Annotated[str, typer.Option("--format", help="text, markdown or json.")] = "text",
    fail_on_risk: Annotated[bool, typer.Option(help="Exit 3 when any change is flagged as risky.")] = False,
    project_dir: ProjectOption = None,
) -> None:
    """Render each stack at BASE (its own code and config) and in the working tree; show and flag the changes."""
    from .diff import as_json, as_markdown, as_text, diff_stacks
    from .revisions import DiffError

    if output_format not in ("text", "markdown", "json") or bool(stack) == all_stacks:
        typer.echo("error: give exactly one of --stack or --all-stacks, and --format text|markdown|json", err=True)
        raise typer.Exit(EXIT_USAGE)
    with _usage_errors(StackNotFoundError, DiffError):
        project = Project.load(project_dir or default_project_root())
        stacks = project.stack_names() if all_stacks else [str(stack)]
        diffs = diff_stacks(project.root, base, stacks)
    render_format = {"text": as_text, "json": as_json}.get(output_format)
    typer.echo(render_format(diffs) if render_format else as_markdown(diffs, base))
    if fail_on_risk and any(d.risks for d in diffs):
        raise typer.Exit(EXIT_RISKY)


if __name__ == "__main__":
    app()
