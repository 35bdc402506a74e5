"""`verify` (the whole backup, what a restore selection reads, or single resources; with the
log) and `inspect` (what a seal claims, unverified)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from collections.abc import Sequence

    from merkle_backup.selection import Selection
    from merkle_backup.signing import PublicKey
    from merkle_backup.storage.source import BackupSource
    from merkle_backup.tlog.check import LogProof
    from merkle_backup.verifier import VerifyReport

from merkle_backup.cli.common import (
    MAX_SHOWN_FAILURES,
    command,
    funnel,
    open_log,
    open_source,
    read_file,
    single_pass,
)
from merkle_backup.cli.options import (
    json_option,
    limits_from,
    limits_options,
    log_options,
    seal_option,
    storage_options,
    trust_option,
)
from merkle_backup.cli.terminal import (
    Progress,
)
from merkle_backup.display import shown
from merkle_backup.errors import ExitCode


def selection_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """`velero restore create`'s selection flags, with Velero's meaning (docs/format.md §9.2)."""
    for option in reversed(
        [
            click.option(
                "--include-namespaces",
                "include_namespaces",
                multiple=True,
                metavar="NS",
                help="Namespaces the restore includes: names or globs (prod-*, *), "
                "comma-separated or repeated, as Velero matches them.",
            ),
            click.option(
                "--exclude-namespaces",
                "exclude_namespaces",
                multiple=True,
                metavar="NS",
                help="Namespaces the restore excludes (globs; an exclude wins).",
            ),
            click.option(
                "--namespace",
                "namespaces",
                multiple=True,
                help="One namespace by its exact name (no glob: see --include-namespaces). "
                "Repeatable.",
            ),
            click.option(
                "--include-resources",
                "include_resources",
                multiple=True,
                metavar="RES",
                help="Resources the restore includes (deployments.apps, secrets, *).",
            ),
            click.option(
                "--exclude-resources",
                "exclude_resources",
                multiple=True,
                metavar="RES",
                help="Resources the restore excludes; only exact resource.group names narrow.",
            ),
            click.option(
                "--include-cluster-resources",
                "include_cluster_resources",
                type=click.Choice(["true", "false"]),
                is_flag=False,
                flag_value="true",
                default=None,
                help="Velero's three-state flag: unset, =true (bare flag), or =false.",
            ),
            click.option(
                "--restore",
                "restore_file",
                type=click.Path(path_type=Path),
                help="A Velero Restore manifest (YAML or JSON): verify what it restores.",
            ),
        ]
    ):
        f = option(f)
    return f


@command()
@click.argument("backup")
@trust_option
@selection_options
@click.option("--resource", "resources", multiple=True,
              help="Verify only this tar path or bucket object (velero-backup.json). Repeatable.")
@click.option(
    "--uid",
    "expected_uid",
    help="The Backup object's metadata.uid in the cluster (catches replayed backups).",
)
@log_options
@click.option("--witness", "witnesses", multiple=True, type=click.Path(path_type=Path),
              help="With --log: require this witness's cosignature (public key). Repeatable.")
@seal_option
@json_option
@limits_options
@storage_options
@funnel
@single_pass
def verify(*, backup: str, trust: tuple[Path, ...], include_namespaces: tuple[str, ...],
           exclude_namespaces: tuple[str, ...], namespaces: tuple[str, ...],
           include_resources: tuple[str, ...], exclude_resources: tuple[str, ...],
           include_cluster_resources: str | None, restore_file: Path | None,
           resources: tuple[str, ...], expected_uid: str | None, log: str | None,
           log_state: Path | None, witnesses: tuple[Path, ...],
           seal_path: Path | None, as_json: bool, max_entry_size: int | None,
           max_entries: int | None) -> int:
    """Verify BACKUP against its seal: the whole backup, what a restore of a selection reads
    (the same flags as `velero restore create`, or --restore FILE), or single resources.
    Damage outside the chosen scope is counted, not failed."""
    from merkle_backup.selection import Scope
    from merkle_backup.trustfile import load_trusted
    from merkle_backup.verifier import verify_backup

    keys = [k for p in trust for k in load_trusted(p)]
    source = open_source(backup, seal_path)
    selection = selection_from_flags(
        source.name, include_namespaces=include_namespaces,
        exclude_namespaces=exclude_namespaces, namespaces=namespaces,
        include_resources=include_resources, exclude_resources=exclude_resources,
        include_cluster_resources=include_cluster_resources, restore_file=restore_file)
    scope = Scope(selection, frozenset(resources))
    with Progress("verify") as progress:
        report = verify_backup(source, keys, scope=scope, expected_uid=expected_uid,
                               limits=limits_from(max_entry_size, max_entries), progress=progress)
    in_log = verify_in_log(source, keys, log, log_state, witnesses) if log else None
    if witnesses and not log:
        from merkle_backup.errors import UsageError

        raise UsageError("--witness needs --log")
    if as_json:
        click.echo(json.dumps({**report.to_json(), **({"log": in_log.to_json()} if in_log else {})},
                              indent=2))
    else:
        print_report(report)
        if in_log is not None:
            seen = (
                f", cosigned by {', '.join(map(shown, in_log.witnessed))}"
                if in_log.witnessed
                else ""
            )
            click.echo(
                f"  log: entry {in_log.index} of {in_log.size} in {shown(in_log.log)}, the latest "
                f"for its name, inclusion proof checked{seen}"
            )
    return ExitCode.VERIFIED if report.verified else ExitCode.NOT_AUTHENTIC


def verify_in_log(source: BackupSource, keys: Sequence[PublicKey], log: str,
                  log_state: Path | None, witnesses: Sequence[Path]) -> LogProof:
    from merkle_backup.formats.seal import read_seal_head
    from merkle_backup.tlog.check import verify_in_log
    from merkle_backup.trustfile import load_trusted

    the_log = open_log(log, log_state, keys)
    with source.open_seal() as f:
        head = read_seal_head(f)
    return verify_in_log(the_log, source.name, head.checkpoint,
                         [k for p in witnesses for k in load_trusted(p)])


def selection_from_flags(backup: str, *, include_namespaces: tuple[str, ...],
               exclude_namespaces: tuple[str, ...], namespaces: tuple[str, ...],
               include_resources: tuple[str, ...], exclude_resources: tuple[str, ...],
               include_cluster_resources: str | None, restore_file: Path | None
               ) -> Selection | None:
    """The restore selection the flags or a Restore manifest give; None: none was given."""
    from merkle_backup.errors import UsageError
    from merkle_backup.selection import (
        Selection,
        parse_restore_manifest,
        selection_from_restore,
        split_list,
    )

    flags = (include_namespaces, exclude_namespaces, namespaces, include_resources,
             exclude_resources)
    if restore_file is not None:
        if any(flags) or include_cluster_resources is not None:
            raise UsageError("--restore takes its selection from the Restore manifest: "
                             "give no other selection flag")
        from merkle_backup.storage.files import MAX_RESTORE_FILE_BYTES

        obj = parse_restore_manifest(read_file(restore_file, MAX_RESTORE_FILE_BYTES),
                                     str(restore_file))
        return selection_from_restore(obj, backup, str(restore_file))
    if not any(flags) and include_cluster_resources is None:
        return None
    return Selection(
        include_namespaces=split_list(include_namespaces),
        exclude_namespaces=split_list(exclude_namespaces),
        exact_namespaces=tuple(namespaces),
        include_resources=split_list(include_resources),
        exclude_resources=split_list(exclude_resources),
        include_cluster_resources=(None if include_cluster_resources is None
                                   else include_cluster_resources == "true"),
    )


def print_report(report: VerifyReport) -> None:
    verdict = "VERIFIED" if report.verified else "NOT AUTHENTIC"
    remark = f" ({report.scope_remark})" if report.scope_remark else ""
    click.echo(f"{verdict}: backup {shown(report.backup)} (uid {shown(report.uid)}), "
               f"{shown(report.scope)}{remark}")
    created = f"{report.created:%Y-%m-%dT%H:%M:%SZ}" if report.created else "?"
    click.echo(f"  sealed {created}, signed by key {report.key_id[:16]}")
    click.echo(f"  root {report.root.hex()}, {report.tree_size} leaves, {report.checked} in scope")
    if report.selection is not None:
        names = ", ".join(map(shown, report.namespaces[:20]))
        more = " ..." if len(report.namespaces) > 20 else ""
        click.echo(f"  namespaces selected: {len(report.namespaces)}"
                   + (f" ({names}{more})" if names else ""))
    for failure in report.failures[:MAX_SHOWN_FAILURES]:
        detail = f"  ({shown(failure.detail)})" if failure.detail else ""
        click.echo(f"  {failure.problem:<10} {shown(failure.path)}{detail}")
    hidden = len(report.failures) - min(len(report.failures), MAX_SHOWN_FAILURES)
    if hidden or report.unlisted_failures:
        listed = " (use --json for the next 1000)" if hidden else ""
        click.echo(f"  ... and {hidden + report.unlisted_failures} more{listed}")
    if report.out_of_scope_failures:
        click.echo(f"  outside this scope: {report.out_of_scope_failures} problem(s) in entries "
                   "the selection does not read; they do not change this verdict (verify without "
                   "a selection to list them)")
    for warning in report.warnings:
        click.echo(f"  warning: {shown(warning.path)}: {shown(warning.problem)}")
    for note in report.notes:
        click.echo(f"  note: {shown(note)}")


@command()
@click.argument("seal_file", type=click.Path(path_type=Path))
@json_option
@funnel
def inspect(seal_file: Path, as_json: bool) -> None:
    """Show what a seal file claims. Nothing is verified: use `verify` for that."""
    from merkle_backup.inspect import describe_seal_file
    from merkle_backup.storage.files import open_user_file

    with open_user_file(seal_file) as f:  # a regular file only; streamed, never held whole
        info = describe_seal_file(f)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    click.echo("UNVERIFIED seal contents (signature not checked; use `verify --trust`):")
    for label in (
        "backup",
        "uid",
        "tree_size",
        "root",
        "archive_blake3",
        "archive_size",
        "created",
        "key_id",
    ):
        click.echo(f"  {label:<15}{shown(info[label])}")
    click.echo("  leaves by namespace:")
    for namespace, count in info["leaves_by_namespace"].items():
        click.echo(f"    {shown(namespace) or '(cluster, bucket, metadata)'}: {count}")
    click.echo("checkpoint (the signed text):")
    for line in str(info["checkpoint"]).splitlines():  # its own newlines kept, nothing else
        click.echo(shown(line))
    click.echo(f"signature {shown(info['signature'])}")
