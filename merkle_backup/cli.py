"""The command line: thin click commands around builder and verifier, and one error funnel.

Exit codes (README, docs/format.md §8): 0 verified; 1 not authentic (tampering or corruption
found); 2 usage; 3 could not check (missing file, unreadable input, bad key, I/O); 130
interrupted (SIGINT; the console entry point, ``_entry.py``, handles it).

Every human-readable line that holds anything from the backup or the bucket (paths, names,
uids, error details) goes through ``display.shown``: no control character, ESC sequence or bidi
override of the attacker's reaches the terminal. ``--json`` prints exact JSON.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click

from merkle_backup.cli_fleet import fleet_options as _fleet_options
from merkle_backup.display import shown
from merkle_backup.errors import Error, ExitCode, Interrupted, NotAuthentic

_MAX_SHOWN_FAILURES = 50


def _funnel(command: Callable[..., int | None]) -> Callable[..., None]:
    """Turn every deliberate error into one line on stderr and its exit code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        as_json = kwargs.get("as_json", False)
        try:
            code = command(*args, **kwargs) or ExitCode.VERIFIED
        except Error as e:
            click.echo(f"merkle-backup: {'not authentic' if isinstance(e, NotAuthentic) else 'error'}: "
                       f"{shown(e.diagnostics())}", err=True)
            if as_json:  # the same shape as a report, so callers need one parser
                subject = str(kwargs.get("backup") or kwargs.get("proof_file") or "")
                problem = "not authentic" if isinstance(e, NotAuthentic) else "could not check"
                click.echo(json.dumps({
                    "verified": False, "backup": None, "root": None, "tree_size": None,
                    "checked": 0,
                    "failures": [{"path": subject, "problem": problem, "detail": e.diagnostics()}],
                    "error": e.diagnostics(), "exit_code": e.exit_code,
                }))
            code = e.exit_code
        except Interrupted:
            raise  # the entry point prints the line and exits 130 (it may not wait for threads)
        except KeyboardInterrupt:  # run without the entry point's handler (e.g. in-process)
            click.echo("merkle-backup: interrupted", err=True)
            code = ExitCode.INTERRUPTED
        sys.exit(code)

    return wrapper


def _trust_option(f: Callable) -> Callable:
    return click.option(
        "--trust", "trust", multiple=True, required=True, type=click.Path(path_type=Path),
        help="Trusted Ed25519 public key (PEM). Repeatable. Keys in the backup are never used.",
    )(f)


def _json_option(f: Callable) -> Callable:
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")(f)


def _seal_option(f: Callable) -> Callable:
    return click.option(
        "--seal", "seal_path", type=click.Path(path_type=Path),
        help="Seal file (default: <backup-dir>/<name>-merkle.seal, or X.seal beside a bare tarball X).",
    )(f)


def _limits_options(f: Callable) -> Callable:
    f = click.option("--max-entry-size", type=click.IntRange(min=1), help="Largest entry in bytes (default 64 MiB).")(f)
    f = click.option("--max-entries", type=click.IntRange(min=1), help="Most entries (default 5,000,000).")(f)
    return f


def _limits(max_entry_size: int | None, max_entries: int | None):
    from merkle_backup.archive import Limits

    overrides = {}
    if max_entry_size:
        overrides["max_entry_size"] = max_entry_size
    if max_entries:
        overrides["max_entries"] = max_entries
    return Limits(**overrides)


class _Progress:
    """A progress bar on stderr, only when stderr is a terminal."""

    def __init__(self, label: str, total: int) -> None:
        self.bar = None
        if sys.stderr.isatty() and total > 0:
            self.bar = click.progressbar(length=total, label=label, file=sys.stderr)

    def __enter__(self) -> Callable[[int], None] | None:
        if self.bar is None:
            return None
        self.bar.__enter__()
        return self.bar.update

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


_STORAGE_KEY = "merkle_backup.storage"


def _storage_options(f: Callable) -> Callable:
    """S3 connection options, named after a Velero BackupStorageLocation's settings. They are
    kept in the click context (read by _open_source), so commands do not pass them around."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from merkle_backup.storage.resolve import ConnectionOptions

        click.get_current_context().meta[_STORAGE_KEY] = ConnectionOptions(
            endpoint_url=kwargs.pop("endpoint_url"), region=kwargs.pop("region"),
            profile=kwargs.pop("profile"), path_style=kwargs.pop("path_style") or None,
            ca_bundle=kwargs.pop("ca_bundle"),
            insecure_skip_tls_verify=kwargs.pop("insecure_skip_tls_verify") or None,
            sse_c_key_file=kwargs.pop("sse_c_key"), bsl=kwargs.pop("bsl"),
            timeout=kwargs.pop("timeout"),
        )
        return f(*args, **kwargs)

    wrapper.__click_params__ = list(getattr(f, "__click_params__", []))  # type: ignore[attr-defined]
    path = click.Path(path_type=Path)
    for option in reversed([
        click.option("--bsl", type=path, help="Read the settings below (and the bucket and prefix, "
                     "so BACKUP may be a bare NAME) from a BackupStorageLocation manifest "
                     "(JSON, or simple YAML). Options given here win."),
        click.option("--endpoint-url", help="S3 endpoint (BSL s3Url), for MinIO, Ceph and others."),
        click.option("--region", help="Bucket region (BSL region)."),
        click.option("--profile", help="AWS profile for credentials (BSL profile)."),
        click.option("--path-style", is_flag=True, help="Path-style addressing (BSL s3ForcePathStyle)."),
        click.option("--ca-bundle", type=path, help="PEM CA bundle for the endpoint's TLS (BSL caCert)."),
        click.option("--insecure-skip-tls-verify", is_flag=True,
                     help="Do not check the endpoint's TLS certificate (BSL insecureSkipTLSVerify)."),
        click.option("--sse-c-key", type=path,
                     help="SSE-C key file, 32 raw bytes (BSL customerKeyEncryptionFile)."),
        click.option("--timeout", type=click.FloatRange(min=0.1, max=86400), metavar="SECONDS",
                     help="Most time one storage operation may take, retries included (default "
                          "60); each connect and read waits a third of it at most."),
    ]):
        wrapper = option(wrapper)
    return wrapper


def _storage():
    from merkle_backup.storage.resolve import ConnectionOptions

    ctx = click.get_current_context(silent=True)
    options = ctx.meta.get(_STORAGE_KEY) if ctx is not None else None
    return options if options is not None else ConnectionOptions()


def _log_options(f: Callable) -> Callable:
    """--log and --log-state (the transparency log, merkle_backup/tlog/)."""
    f = click.option("--log-state", "log_state", type=click.Path(path_type=Path),
                     help="The last log checkpoint trusted (default: "
                          "$XDG_STATE_HOME/merkle-backup/log-state.json).")(f)
    return click.option("--log", "log", metavar="DIR|s3://BUCKET/PREFIX",
                        help="The backup transparency log (never under Velero's prefix).")(f)


def _max_age_option(f: Callable) -> Callable:
    return click.option("--max-age", "max_age", type=click.FloatRange(min=0), default=6.0,
                        show_default=True, metavar="HOURS",
                        help="A final backup completed longer ago than this is never sealed "
                             "silently: `seal missing` (keep it above the CronJob period).")(f)


def _open_log(log: str, log_state: Path | None, keys, location: str | None = None):
    from merkle_backup.errors import UsageError
    from merkle_backup.tlog.log import Log, LogState
    from merkle_backup.tlog.store import open_log_store

    if location is not None and _inside(log, location):
        raise UsageError(f"--log {log} is inside the Velero location {location}: put the log "
                         "elsewhere (a new folder under Velero's prefix breaks its sync)")
    return Log(open_log_store(log, _storage(), warn=_warn), keys, LogState(log_state))


def _inside(log: str, location: str) -> bool:
    import os

    if log.startswith("s3://") != location.startswith("s3://"):
        return False
    if log.startswith("s3://"):
        a, b = log.rstrip("/") + "/", location.rstrip("/") + "/"
        return a.startswith(b)
    a, b = os.path.realpath(log), os.path.realpath(location)
    return a == b or a.startswith(b.rstrip("/") + "/")


def _warn(message: str) -> None:
    click.echo(f"merkle-backup: warning: {shown(message)}", err=True)


def _open_source(backup: str | Path, seal_path: Path | None):
    """A local folder or tarball, or s3://BUCKET/PREFIX/backups/NAME (storage/resolve.py)."""
    from merkle_backup.storage.resolve import open_backup

    return open_backup(backup, _storage(), seal_path, warn=_warn)


def _single_pass(command: Callable[..., Any]) -> Callable[..., Any]:
    """seal, verify, prove: one bulk pass in this process, so the interpreter is tuned for it
    (tuning.bulk_pass: process-wide settings, hence only here, never in a library call nor in
    audit / seal-all, whose passes run on a thread pool)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from merkle_backup.tuning import bulk_pass

        with bulk_pass():
            return command(*args, **kwargs)

    return wrapper


def _tarball_size(source) -> int:
    """For the progress bar only: 0 (no bar) when the size cannot be had."""
    if not sys.stderr.isatty():
        return 0  # no bar, so no need to ask (an S3 HEAD)
    try:
        return source.tarball_size()
    except Error:
        return 0


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="merkle-backup")
def main() -> None:
    """Tamper-evident Velero backups: seal a backup once, prove any resource of it later.

    \b
    Exit codes: 0 verified; 1 not authentic (tampering or corruption found);
                2 usage error; 3 could not check (missing file, bad key, I/O).
    """


@main.command()
@click.argument("keyfile", type=click.Path(path_type=Path))
@_funnel
def keygen(keyfile: Path) -> None:
    """Write a new Ed25519 key pair: KEYFILE (private, mode 0600) and KEYFILE.pub."""
    from merkle_backup.signing import generate_keypair, load_public_key

    private, public = generate_keypair(keyfile)
    key = load_public_key(public)
    click.echo(f"private key: {private}\npublic key:  {public}\nkey id:      {key.key_id.hex()}")


@main.command()
@click.argument("backup")
@click.option("--key", "key_path", required=True, type=click.Path(path_type=Path), help="Private key (PEM).")
@_seal_option
@click.option("--replace", is_flag=True, help="Overwrite an existing seal.")
@click.option("--force", is_flag=True,
              help="Seal even if classic and -preferredversion copies differ or a manifest's "
                   "metadata disagrees with its path (reported as warnings).")
@_limits_options
@_storage_options
@_funnel
@_single_pass
def seal(backup: str, key_path: Path, seal_path: Path | None, replace: bool, force: bool,
         max_entry_size: int | None, max_entries: int | None) -> None:
    """Seal BACKUP (a backup folder, a .tar.gz, or s3://BUCKET/PREFIX/backups/NAME) with a
    signed Merkle tree."""
    from merkle_backup.builder import seal_backup
    from merkle_backup.signing import load_private_key

    private = load_private_key(key_path)
    source = _open_source(backup, seal_path)
    with _Progress("sealing", _tarball_size(source)) as progress:
        result = seal_backup(source, private, created_at=datetime.now(timezone.utc),
                             limits=_limits(max_entry_size, max_entries), replace=replace, force=force,
                             progress=progress)
    cp = result.checkpoint
    click.echo(f"sealed {shown(cp.backup)} (uid {shown(cp.uid)}): {result.entries} tar entries and "
               f"{result.bucket_objects} bucket objects, {cp.tree_size} leaves\n"
               f"root {cp.root.hex()}\nseal {shown(source.seal_path)}")
    for item in result.inconsistencies:
        click.echo(f"warning: sealed despite: {shown(item.path)}: {shown(item.problem)}", err=True)


def _selection_options(f: Callable) -> Callable:
    """`velero restore create`'s selection flags, with Velero's meaning (docs/format.md §9.2)."""
    for option in reversed([
        click.option("--include-namespaces", "include_namespaces", multiple=True, metavar="NS",
                     help="Namespaces the restore includes: names or globs (prod-*, *), "
                          "comma-separated or repeated, as Velero matches them."),
        click.option("--exclude-namespaces", "exclude_namespaces", multiple=True, metavar="NS",
                     help="Namespaces the restore excludes (globs; an exclude wins)."),
        click.option("--namespace", "namespaces", multiple=True,
                     help="One namespace by its exact name (no glob). Repeatable."),
        click.option("--include-resources", "include_resources", multiple=True, metavar="RES",
                     help="Resources the restore includes (deployments.apps, secrets, *)."),
        click.option("--exclude-resources", "exclude_resources", multiple=True, metavar="RES",
                     help="Resources the restore excludes; only exact resource.group names narrow."),
        click.option("--include-cluster-resources", "include_cluster_resources",
                     type=click.Choice(["true", "false"]), is_flag=False, flag_value="true",
                     default=None, help="Velero's three-state flag: unset, =true (bare flag), "
                     "or =false."),
        click.option("--restore", "restore_file", type=click.Path(path_type=Path),
                     help="A Velero Restore manifest (YAML or JSON): verify what it restores."),
    ]):
        f = option(f)
    return f


@main.command()
@click.argument("backup")
@_trust_option
@_selection_options
@click.option("--resource", "resources", multiple=True,
              help="Verify only this tar path or bucket object (velero-backup.json). Repeatable.")
@click.option("--uid", "expected_uid", help="The Backup object's metadata.uid in the cluster (catches replayed backups).")
@_log_options
@click.option("--witness", "witnesses", multiple=True, type=click.Path(path_type=Path),
              help="With --log: require this witness's cosignature (public key). Repeatable.")
@_seal_option
@_json_option
@_limits_options
@_storage_options
@_funnel
@_single_pass
def verify(backup: str, trust: tuple[Path, ...], include_namespaces: tuple[str, ...],
           exclude_namespaces: tuple[str, ...], namespaces: tuple[str, ...],
           include_resources: tuple[str, ...], exclude_resources: tuple[str, ...],
           include_cluster_resources: str | None, restore_file: Path | None,
           resources: tuple[str, ...], expected_uid: str | None, log: str | None,
           log_state: Path | None, witnesses: tuple[Path, ...],
           seal_path: Path | None, as_json: bool, max_entry_size: int | None,
           max_entries: int | None) -> int:
    """Verify BACKUP against its seal: the whole backup, what a restore of a selection reads
    (the same flags as `velero restore create`, or --restore FILE), or single resources.

    \b
    Exit codes: 0 verified; 1 not authentic (tampering found, each failure named);
                2 usage error; 3 could not check (missing file, bad key, I/O, a limit).
    """
    from merkle_backup.selection import Scope
    from merkle_backup.signing import load_public_key
    from merkle_backup.verifier import verify_backup

    keys = [load_public_key(p) for p in trust]
    source = _open_source(backup, seal_path)
    selection = _selection(
        source.name, include_namespaces, exclude_namespaces, namespaces, include_resources,
        exclude_resources, include_cluster_resources, restore_file)
    scope = Scope(selection, frozenset(resources))
    with _Progress("verifying", _tarball_size(source)) as progress:
        report = verify_backup(source, keys, scope=scope, expected_uid=expected_uid,
                               limits=_limits(max_entry_size, max_entries), progress=progress)
    in_log = _verify_in_log(source, keys, log, log_state, witnesses) if log else None
    if witnesses and not log:
        from merkle_backup.errors import UsageError

        raise UsageError("--witness needs --log")
    if as_json:
        click.echo(json.dumps({**report.to_json(), **({"log": in_log.to_json()} if in_log else {})},
                              indent=2))
    else:
        _print_report(report)
        if in_log is not None:
            seen = f", cosigned by {', '.join(map(shown, in_log.witnessed))}" if in_log.witnessed else ""
            click.echo(f"  log: entry {in_log.index} of {in_log.size} in {shown(in_log.log)}, the latest "
                       f"for its name, inclusion proof checked{seen}")
    return ExitCode.VERIFIED if report.verified else ExitCode.NOT_AUTHENTIC


def _verify_in_log(source, keys, log, log_state, witnesses):
    from merkle_backup.formats.seal import read_seal_head
    from merkle_backup.signing import load_public_key
    from merkle_backup.tlog.check import verify_in_log

    the_log = _open_log(log, log_state, keys)
    with source.open_seal() as f:
        head = read_seal_head(f)
    return verify_in_log(the_log, source.name, head.checkpoint,
                         [load_public_key(p) for p in witnesses])


def _selection(backup: str, include_namespaces: tuple[str, ...],
               exclude_namespaces: tuple[str, ...], namespaces: tuple[str, ...],
               include_resources: tuple[str, ...], exclude_resources: tuple[str, ...],
               include_cluster_resources: str | None, restore_file: Path | None):
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

        obj = parse_restore_manifest(_read_file(restore_file, MAX_RESTORE_FILE_BYTES),
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


def _print_report(report) -> None:
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
    for failure in report.failures[:_MAX_SHOWN_FAILURES]:
        detail = f"  ({shown(failure.detail)})" if failure.detail else ""
        click.echo(f"  {failure.problem:<10} {shown(failure.path)}{detail}")
    hidden = len(report.failures) - min(len(report.failures), _MAX_SHOWN_FAILURES)
    if hidden or report.unlisted_failures:
        listed = " (use --json for the next 1000)" if hidden else ""
        click.echo(f"  ... and {hidden + report.unlisted_failures} more{listed}")
    if report.out_of_scope_failures:
        click.echo(f"  {report.out_of_scope_failures} problem(s) outside the chosen scope (not counted)")
    for warning in report.warnings:
        click.echo(f"  warning: {shown(warning.path)}: {shown(warning.problem)}")
    for note in report.notes:
        click.echo(f"  note: {shown(note)}")


@main.command()
@click.argument("seal_file", type=click.Path(path_type=Path))
@_json_option
@_funnel
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
    for label in ("backup", "uid", "tree_size", "root", "archive_blake3", "archive_size", "created", "key_id"):
        click.echo(f"  {label:<15}{shown(info[label])}")
    click.echo("  leaves by namespace:")
    for namespace, count in info["leaves_by_namespace"].items():
        click.echo(f"    {shown(namespace) or '(cluster, bucket, metadata)'}: {count}")
    click.echo("checkpoint (the signed text):")
    for line in str(info["checkpoint"]).splitlines():  # its own newlines kept, nothing else
        click.echo(shown(line))
    click.echo(f"signature {shown(info['signature'])}")


@main.command()
@_funnel
def demo() -> int:
    """Seal and verify a built-in example backup, then tamper with it and show the failure."""
    from merkle_backup.demo import run_demo

    return run_demo(click.echo)


@main.command()
@click.argument("backup")
@click.option("--resource", "resources", multiple=True, help="Tar path (or bucket object name) to prove. Repeatable.")
@click.option("--namespace", "namespaces", multiple=True, help="Prove this whole namespace, or its absence. Repeatable.")
@click.option("--with-content", is_flag=True, help="Embed the manifests, so the proof file alone suffices.")
@click.option("--trust", "trust", multiple=True, type=click.Path(path_type=Path),
              help="Check the seal's signature with this key before proving (recommended).")
@click.option("-o", "--output", "output", required=True, type=click.Path(path_type=Path), help="Proof file to write.")
@click.option("--force", is_flag=True, help="Overwrite an existing output file (never a seal).")
@_seal_option
@_funnel
@_single_pass
def prove(backup: str, resources: tuple[str, ...], namespaces: tuple[str, ...], with_content: bool,
          trust: tuple[Path, ...], output: Path, force: bool, seal_path: Path | None) -> None:
    """Write a proof of single resources or whole namespaces of BACKUP, checkable offline."""
    from merkle_backup.formats.proof import encode_proof
    from merkle_backup.proofs import prove as build
    from merkle_backup.signing import load_public_key
    from merkle_backup.storage.files import MAX_PROOF_FILE_BYTES, check_proof_output
    from merkle_backup.storage.local import write_atomic

    keys = [load_public_key(p) for p in trust]
    source = _open_source(backup, seal_path)
    check_proof_output(output, source.seal_path, force=force)
    proof = build(source, resources=resources, namespaces=namespaces,
                  with_content=with_content, trusted=keys)
    data = encode_proof(proof)
    if len(data) > MAX_PROOF_FILE_BYTES:
        from merkle_backup.errors import UsageError

        raise UsageError(f"the proof would be {len(data)} bytes, over the {MAX_PROOF_FILE_BYTES} "
                         "byte limit of verify-proof: prove fewer namespaces or resources")
    check_proof_output(output, source.seal_path, force=force)
    write_atomic(output, data, replace=force, overwrite_hint="--force")
    click.echo(f"wrote {shown(output)}: {len(proof.resources)} resource(s), {len(proof.namespaces)} "
               f"namespace(s), {len(proof.contents)} embedded manifest(s), {len(data)} bytes")


@main.command("verify-proof")
@click.argument("proof_file", type=click.Path(path_type=Path))
@_trust_option
@click.option("--content", "content_files", multiple=True, type=click.Path(path_type=Path),
              help="A manifest you hold; it must be the content of a proven resource. Repeatable.")
@click.option("--backup", "expected_backup", help="Fail unless the proof is for this backup name.")
@click.option("--uid", "expected_uid", help="Fail unless the proof is for the backup with this UID.")
@_json_option
@_funnel
def verify_proof(proof_file: Path, trust: tuple[Path, ...], content_files: tuple[Path, ...],
                 expected_backup: str | None, expected_uid: str | None, as_json: bool) -> None:
    """Check a proof file offline with only the trusted public key."""
    from merkle_backup.proofs import verify_proof as check
    from merkle_backup.signing import load_public_key
    from merkle_backup.storage.files import MAX_CONTENT_FILE_BYTES, MAX_PROOF_FILE_BYTES

    keys = [load_public_key(p) for p in trust]
    contents = [(str(p), _read_file(p, MAX_CONTENT_FILE_BYTES)) for p in content_files]
    report = check(_read_file(proof_file, MAX_PROOF_FILE_BYTES), keys, contents=contents,
                   expected_backup=expected_backup, expected_uid=expected_uid)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
        return
    cp = report.checkpoint
    click.echo(f"VERIFIED: proof for backup {shown(cp.backup)} (uid {shown(cp.uid)}), sealed "
               f"{cp.created:%Y-%m-%dT%H:%M:%SZ}, signed by {shown(report.signer)}")
    click.echo(f"  root {cp.root.hex()}, {cp.tree_size} leaves")
    for path in report.resources:
        click.echo(f"  resource  {shown(path)}")
    for ns in report.namespaces:
        state = f"complete, {len(ns.resources)} entries" if ns.present else "absent from the backup"
        click.echo(f"  namespace {shown(ns.namespace)}: {state}")
    for path in report.contents:
        click.echo(f"  content   {shown(path)}")


def _read_file(path: Path, cap: int) -> bytes:
    """A file the user named: regular (a FIFO or device is refused, never waited on), capped."""
    from merkle_backup.storage.files import read_bounded

    return read_bounded(path, cap, follow=True)


# --- every backup of a storage location (fleet.py) ----------------------------------------------

def _open_location(location: str | None, jobs: int):
    from merkle_backup.storage.resolve import open_location

    return open_location(location, _storage(), pool_size=jobs + 2, warn=_warn)


def _jobs_option(default: int) -> Callable[[Callable], Callable]:
    return click.option("--jobs", type=click.IntRange(1, 64), default=default, show_default=True,
                        help="Backups processed in parallel.")


def _print_rows(rows, verbose_failures: bool) -> None:
    names = [shown(r.name) for r in rows]  # folder names under backups/ are the bucket's
    width = max([len(n) for n in names] + [6])
    click.echo(f"{'BACKUP':<{width}}  {'STATUS':<10}  DETAIL")
    for name, row in zip(names, rows):
        status = row.status.upper() if row.status in ("tampered", "error") else row.status
        click.echo(f"{name:<{width}}  {status:<10}  {shown(row.detail)}")
        if verbose_failures:
            for failure in row.failures[:_MAX_SHOWN_FAILURES]:
                detail = f"  ({shown(failure.detail)})" if failure.detail else ""
                click.echo(f"{'':<{width}}    {failure.problem:<10} {shown(failure.path)}{detail}")


def _print_interrupted(report, as_json: bool, verbose_failures: bool) -> None:
    """The rows an interrupted audit or seal-all finished (the entry point then exits 130)."""
    if report is None:
        return
    if as_json:
        click.echo(json.dumps({**report.to_json(), "exit_code": ExitCode.INTERRUPTED,
                               "interrupted": True}, indent=2))
        return
    if report.backups:
        _print_rows(report.backups, verbose_failures=verbose_failures)
    for note in report.notes:
        click.echo(f"note: {shown(note)}")


@main.command("seal-all")
@click.argument("location", required=False)
@click.option("--key", "key_path", required=True, type=click.Path(path_type=Path), help="Private key (PEM).")
@_jobs_option(2)
@_log_options
@_max_age_option
@click.option("--backfill", is_flag=True, help="With --log: also seal (and log) final backups "
              "older than --max-age; run it by hand, after checking them.")
@_json_option
@_limits_options
@_storage_options
@_funnel
def seal_all(location: str | None, key_path: Path, jobs: int, log: str | None,
             log_state: Path | None, max_age: float, backfill: bool, as_json: bool,
             max_entry_size: int | None, max_entries: int | None) -> int:
    """Seal every final backup under LOCATION (s3://BUCKET/PREFIX, or a folder holding backups/)
    that has no seal yet; skip the rest with a reason. Exit 0, or 3 if any could not be sealed."""
    from merkle_backup.fleet import seal_all as run
    from merkle_backup.signing import load_private_key

    private = load_private_key(key_path)
    try:
        if log:
            report = _seal_all_logged(location, private, jobs, log, log_state, max_age, backfill,
                                      _limits(max_entry_size, max_entries))
        else:
            report = run(_open_location(location, jobs), private, jobs=jobs,
                         clock=lambda: datetime.now(timezone.utc), limits=_limits(max_entry_size, max_entries))
    except Interrupted as e:
        _print_interrupted(e.partial, as_json, verbose_failures=False)
        raise
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
        return report.exit_code
    _print_rows(report.backups, verbose_failures=False)
    s = report.summary
    click.echo(f"{shown(report.location)}: {s['sealed']} sealed, {s['skipped']} skipped, "
               f"{s['tampered']} with a broken seal, {s['error']} could not be sealed"
               + _findings(s))
    for note in report.notes:
        click.echo(f"note: {shown(note)}")
    if report.exit_code == ExitCode.NOT_AUTHENTIC:
        broken = (f", {s['tampered']} backup(s) have a seal that does not decode"
                  if s["tampered"] else "")
        click.echo(f"merkle-backup: not authentic:{(broken + _findings(s))[1:]}", err=True)
    elif report.exit_code:
        click.echo(f"merkle-backup: error: {s['error']} backup(s) could not be sealed", err=True)
    return report.exit_code


def _findings(summary: dict[str, int]) -> str:
    from merkle_backup.tlog.check import BAD

    return "".join(f", {summary[k]} {k}" for k in BAD if summary.get(k))


def _seal_all_logged(location, private, jobs, log, log_state, max_age, backfill, limits):
    from datetime import timedelta

    from merkle_backup.signing import public_key_of
    from merkle_backup.tlog.check import seal_all_logged

    where = _open_location(location, jobs)
    return seal_all_logged(where, private, _open_log(log, log_state, [public_key_of(private)],
                                                      where.describe()),
                           clock=lambda: datetime.now(timezone.utc),
                           max_age=timedelta(hours=max_age), backfill=backfill, jobs=jobs,
                           limits=limits)


@main.command()
@click.argument("location", required=False)
@_trust_option
@_jobs_option(4)
@click.option("--require-seal", is_flag=True, help="Fail (exit 1) on final backups that have no seal.")
@_log_options
@_max_age_option
@_json_option
@_limits_options
@_fleet_options
@_storage_options
@_funnel
def audit(location: str | None, trust: tuple[Path, ...], jobs: int, require_seal: bool,
          log: str | None, log_state: Path | None, max_age: float,
          as_json: bool, max_entry_size: int | None, max_entries: int | None) -> int:
    """Verify every backup under LOCATION (s3://BUCKET/PREFIX, or a folder holding backups/).

    \b
    Exit 0 when every sealed backup verified; 1 when any is tampered (or, with --require-seal,
    a final backup has no seal); 3 when any could not be checked, or there is no backup at all.
    """
    from merkle_backup.cli_fleet import options, print_run
    from merkle_backup.fleet import audit as run
    from merkle_backup.signing import load_public_key

    keys = [load_public_key(p) for p in trust]
    fleet = options(_storage())
    limits = _limits(max_entry_size, max_entries)
    try:
        where = _open_location(location, jobs)
        the_log = _open_log(log, log_state, keys, where.describe()) if log else None
        if the_log is not None and fleet is not None:
            from merkle_backup.errors import UsageError

            raise UsageError("--log does not combine with --shard, --state, --results, "
                             "--metrics or --attest yet: run the log audit on its own")
        if the_log is not None:
            the_log.head()  # a rolled-back or forked log fails before the backups are read
        if fleet is None:
            report, extra = run(where, keys, jobs=jobs, require_seal=require_seal,
                                limits=limits), None
        else:  # issue 16: --shard, --state, --results, --metrics, --attest (fleet_run.py)
            from merkle_backup.fleet_run import run_audit

            extra = run_audit(where, keys, jobs=jobs, require_seal=require_seal, limits=limits,
                              options=fleet)
            report = extra.report
        if the_log is not None:
            from datetime import timedelta

            from merkle_backup.tlog.check import audit_logged

            report = audit_logged(where, keys, the_log, report=report,
                                  clock=lambda: datetime.now(timezone.utc),
                                  max_age=timedelta(hours=max_age))
    except Interrupted as e:
        _print_interrupted(e.partial, as_json, verbose_failures=True)
        raise
    if as_json:
        click.echo(json.dumps({**report.to_json(), **({"not_reread": extra.skipped} if extra else {})},
                              indent=2))
    else:
        _audit_summary(report, require_seal=require_seal)
        if extra is not None:
            print_run(extra)
    if extra is not None:
        try:
            extra.write_outputs(lambda line: None if as_json else click.echo(shown(line)))
        except Error as e:  # the verdict stands: tampering found is still exit 1
            click.echo(f"merkle-backup: error: {shown(e.diagnostics())}", err=True)
            return ExitCode.NOT_AUTHENTIC if report.exit_code == ExitCode.NOT_AUTHENTIC else e.exit_code
    if not as_json:
        _audit_verdict(report, require_seal=require_seal)
    return report.exit_code


def _audit_summary(report, *, require_seal: bool) -> None:
    _print_rows(report.backups, verbose_failures=True)
    s = report.summary
    click.echo(f"{shown(report.location)}: {s['verified']} verified, {s['tampered']} tampered, "
               f"{s['unsealed']} unsealed, {s['unfinished']} unfinished, "
               f"{s['error']} could not be checked" + _findings(s))
    for note in report.notes:
        click.echo(f"note: {shown(note)}")


def _audit_verdict(report, *, require_seal: bool) -> None:
    s = report.summary
    if report.exit_code == ExitCode.NOT_AUTHENTIC:
        unsealed = f", {s['unsealed']} final backup(s) without a seal" if require_seal and s["unsealed"] else ""
        click.echo(f"merkle-backup: not authentic: {s['tampered']} backup(s) tampered{unsealed}"
                   f"{_findings(s)}", err=True)
    elif report.exit_code == ExitCode.CANNOT_CHECK:
        what = f"{s['error']} backup(s) could not be checked" if s["error"] else "no backups found"
        click.echo(f"merkle-backup: error: {what}", err=True)


def _register_fleet_commands() -> None:
    from merkle_backup.cli_fleet import register

    register(main, sys.modules[__name__])


_register_fleet_commands()


@main.command()
@click.argument("name")
@click.option("--key", "key_path", required=True, type=click.Path(path_type=Path), help="Private key (PEM).")
@click.option("--log", "log", required=True, metavar="DIR|s3://BUCKET/PREFIX", help="The log.")
@click.option("--log-state", "log_state", type=click.Path(path_type=Path), help="See seal-all.")
@_storage_options
@_funnel
def forget(name: str, key_path: Path, log: str, log_state: Path | None) -> None:
    """Log a signed tombstone for backup NAME: deleting it on purpose (before its expiration)
    is then not `deleted early`."""
    from merkle_backup.signing import load_private_key, public_key_of
    from merkle_backup.tlog.check import forget as run

    private = load_private_key(key_path)
    index, entry = run(_open_log(log, log_state, [public_key_of(private)]), private, name,
                       lambda: datetime.now(timezone.utc))
    click.echo(f"forgot {shown(name)} (uid {shown(entry.uid)}, root {entry.root.hex()}): "
               f"tombstone at log entry {index}")


@main.command()
@click.option("--log", "log", required=True, metavar="DIR|s3://BUCKET/PREFIX", help="The log to witness.")
@_trust_option
@click.option("--key", "key_path", required=True, type=click.Path(path_type=Path),
              help="The witness's own private key (PEM).")
@click.option("--name", "name", help="The witness's name in its cosignature (default: "
              "merkle-backup-witness/<key id prefix>).")
@click.option("--state", "log_state", type=click.Path(path_type=Path),
              help="The witness's own state: the last checkpoint it cosigned.")
@_storage_options
@_funnel
def witness(log: str, trust: tuple[Path, ...], key_path: Path, name: str | None,
            log_state: Path | None) -> None:
    """Check that the log (signed by a --trust key) extends the last checkpoint this witness
    saw, then add a C2SP cosignature (tlog-cosignature/v1) to its checkpoint."""
    from merkle_backup.errors import UsageError
    from merkle_backup.signing import load_private_key, load_public_key, public_key_of
    from merkle_backup.tlog.check import witness as run
    from merkle_backup.tlog.note import valid_name

    private = load_private_key(key_path)
    me = public_key_of(private)
    name = name or f"merkle-backup-witness/{me.key_id.hex()[:16]}"
    if not valid_name(name):
        raise UsageError(f"--name {name!r}: a note key name has no space, '+' or control character")
    head = run(_open_log(log, log_state, [load_public_key(p) for p in trust]), private, name,
               lambda: datetime.now(timezone.utc))
    click.echo(f"cosigned {shown(head.checkpoint.origin)} at {head.size} entries as {shown(name)}")


if __name__ == "__main__":  # pragma: no cover
    from merkle_backup._entry import main as entry

    entry()
