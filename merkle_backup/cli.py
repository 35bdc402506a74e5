"""The command line: thin click commands around builder and verifier, and one error funnel.

Exit codes (README, docs/format.md §9.3): 0 verified; 1 not authentic (tampering or corruption
found); 2 usage; 3 could not check (missing file, unreadable input, bad key, I/O).
"""

from __future__ import annotations

import functools
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import click

from merkle_backup.errors import Error, NotAuthentic

EXIT_OK, EXIT_NOT_AUTHENTIC, EXIT_USAGE, EXIT_CANNOT_CHECK = 0, 1, 2, 3
_MAX_SHOWN_FAILURES = 50


def _funnel(command: Callable[..., int | None]) -> Callable[..., None]:
    """Turn every deliberate error into one line on stderr and its exit code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        as_json = kwargs.get("as_json", False)
        try:
            code = command(*args, **kwargs) or EXIT_OK
        except Error as e:
            click.echo(f"merkle-backup: {'not authentic' if isinstance(e, NotAuthentic) else 'error'}: "
                       f"{e.diagnostics()}", err=True)
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
        except KeyboardInterrupt:
            click.echo("merkle-backup: interrupted", err=True)
            code = 130
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
    ]):
        wrapper = option(wrapper)
    return wrapper


def _storage():
    from merkle_backup.storage.resolve import ConnectionOptions

    ctx = click.get_current_context(silent=True)
    options = ctx.meta.get(_STORAGE_KEY) if ctx is not None else None
    return options if options is not None else ConnectionOptions()


def _warn(message: str) -> None:
    click.echo(f"merkle-backup: warning: {message}", err=True)


def _open_source(backup: str | Path, seal_path: Path | None):
    """A local folder or tarball, or s3://BUCKET/PREFIX/backups/NAME (storage/resolve.py)."""
    from merkle_backup.storage.resolve import open_backup

    return open_backup(backup, _storage(), seal_path, warn=_warn)


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
    click.echo(f"sealed {cp.backup} (uid {cp.uid}): {result.entries} tar entries and "
               f"{result.bucket_objects} bucket objects, {cp.tree_size} leaves\n"
               f"root {cp.root.hex()}\nseal {source.seal_path}")
    for item in result.inconsistencies:
        click.echo(f"warning: sealed despite: {item.path}: {item.problem}", err=True)


@main.command()
@click.argument("backup")
@_trust_option
@click.option("--namespace", "namespaces", multiple=True, help="Verify only this namespace (exact name). Repeatable.")
@click.option("--include-cluster-resources", is_flag=True, help="Also verify every cluster-scoped resource.")
@click.option("--resource", "resources", multiple=True, help="Verify only this tar path. Repeatable.")
@click.option("--uid", "expected_uid", help="The Backup object's metadata.uid in the cluster (catches replayed backups).")
@_seal_option
@_json_option
@_limits_options
@_storage_options
@_funnel
def verify(backup: str, trust: tuple[Path, ...], namespaces: tuple[str, ...],
           include_cluster_resources: bool, resources: tuple[str, ...], expected_uid: str | None,
           seal_path: Path | None, as_json: bool, max_entry_size: int | None,
           max_entries: int | None) -> int:
    """Verify BACKUP against its seal: the whole backup, or chosen namespaces or resources."""
    from merkle_backup.signing import load_public_key
    from merkle_backup.verifier import Scope, verify_backup

    keys = [load_public_key(p) for p in trust]
    source = _open_source(backup, seal_path)
    scope = Scope(frozenset(namespaces), include_cluster_resources, frozenset(resources))
    with _Progress("verifying", _tarball_size(source)) as progress:
        report = verify_backup(source, keys, scope=scope, expected_uid=expected_uid,
                               limits=_limits(max_entry_size, max_entries), progress=progress)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        _print_report(report)
    return EXIT_OK if report.verified else EXIT_NOT_AUTHENTIC


def _print_report(report) -> None:
    verdict = "VERIFIED" if report.verified else "NOT AUTHENTIC"
    click.echo(f"{verdict}: backup {report.backup} (uid {report.uid}), {report.scope}")
    click.echo(f"  root {report.root.hex()}, {report.tree_size} leaves, {report.checked} in scope")
    for failure in report.failures[:_MAX_SHOWN_FAILURES]:
        detail = f"  ({failure.detail})" if failure.detail else ""
        click.echo(f"  {failure.problem:<10} {failure.path}{detail}")
    hidden = len(report.failures) - min(len(report.failures), _MAX_SHOWN_FAILURES)
    if hidden or report.unlisted_failures:
        listed = " (use --json for the next 1000)" if hidden else ""
        click.echo(f"  ... and {hidden + report.unlisted_failures} more{listed}")
    if report.out_of_scope_failures:
        click.echo(f"  {report.out_of_scope_failures} problem(s) outside the chosen scope (not counted)")
    for warning in report.warnings:
        click.echo(f"  warning: {warning.path}: {warning.problem}")
    for note in report.notes:
        click.echo(f"  note: {note}")


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
        click.echo(f"  {label:<15}{info[label]}")
    click.echo("  leaves by namespace:")
    for namespace, count in info["leaves_by_namespace"].items():
        click.echo(f"    {namespace or '(cluster, bucket, metadata)'}: {count}")
    click.echo("checkpoint (the signed text):")
    click.echo(info["checkpoint"], nl=False)
    click.echo(f"signature {info['signature']}")


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
    click.echo(f"wrote {output}: {len(proof.resources)} resource(s), {len(proof.namespaces)} "
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
    click.echo(f"VERIFIED: proof for backup {cp.backup} (uid {cp.uid}), sealed "
               f"{cp.created:%Y-%m-%dT%H:%M:%SZ}, signed by {report.signer}")
    click.echo(f"  root {cp.root.hex()}, {cp.tree_size} leaves")
    for path in report.resources:
        click.echo(f"  resource  {path}")
    for ns in report.namespaces:
        state = f"complete, {len(ns.resources)} entries" if ns.present else "absent from the backup"
        click.echo(f"  namespace {ns.namespace}: {state}")
    for path in report.contents:
        click.echo(f"  content   {path}")


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
    width = max([len(r.name) for r in rows] + [6])
    click.echo(f"{'BACKUP':<{width}}  {'STATUS':<10}  DETAIL")
    for row in rows:
        status = row.status.upper() if row.status in ("tampered", "error") else row.status
        click.echo(f"{row.name:<{width}}  {status:<10}  {row.detail}")
        if verbose_failures:
            for failure in row.failures[:_MAX_SHOWN_FAILURES]:
                detail = f"  ({failure.detail})" if failure.detail else ""
                click.echo(f"{'':<{width}}    {failure.problem:<10} {failure.path}{detail}")


@main.command("seal-all")
@click.argument("location", required=False)
@click.option("--key", "key_path", required=True, type=click.Path(path_type=Path), help="Private key (PEM).")
@_jobs_option(2)
@_json_option
@_limits_options
@_storage_options
@_funnel
def seal_all(location: str | None, key_path: Path, jobs: int, as_json: bool,
             max_entry_size: int | None, max_entries: int | None) -> int:
    """Seal every final backup under LOCATION (s3://BUCKET/PREFIX, or a folder holding backups/)
    that has no seal yet; skip the rest with a reason. Exit 0, or 3 if any could not be sealed."""
    from merkle_backup.fleet import seal_all as run
    from merkle_backup.signing import load_private_key

    private = load_private_key(key_path)
    report = run(_open_location(location, jobs), private, jobs=jobs,
                 clock=lambda: datetime.now(timezone.utc), limits=_limits(max_entry_size, max_entries))
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
        return report.exit_code
    _print_rows(report.backups, verbose_failures=False)
    s = report.summary
    click.echo(f"{report.location}: {s['sealed']} sealed, {s['skipped']} skipped, "
               f"{s['tampered']} with a broken seal, {s['error']} could not be sealed")
    for note in report.notes:
        click.echo(f"note: {note}")
    if report.exit_code == EXIT_NOT_AUTHENTIC:
        click.echo(f"merkle-backup: not authentic: {s['tampered']} backup(s) have a seal that "
                   "does not decode", err=True)
    elif report.exit_code:
        click.echo(f"merkle-backup: error: {s['error']} backup(s) could not be sealed", err=True)
    return report.exit_code


@main.command()
@click.argument("location", required=False)
@_trust_option
@_jobs_option(4)
@click.option("--require-seal", is_flag=True, help="Fail (exit 1) on final backups that have no seal.")
@_json_option
@_limits_options
@_storage_options
@_funnel
def audit(location: str | None, trust: tuple[Path, ...], jobs: int, require_seal: bool,
          as_json: bool, max_entry_size: int | None, max_entries: int | None) -> int:
    """Verify every backup under LOCATION (s3://BUCKET/PREFIX, or a folder holding backups/).

    \b
    Exit 0 when every sealed backup verified; 1 when any is tampered (or, with --require-seal,
    a final backup has no seal); 3 when any could not be checked, or there is no backup at all.
    """
    from merkle_backup.fleet import audit as run
    from merkle_backup.signing import load_public_key

    keys = [load_public_key(p) for p in trust]
    report = run(_open_location(location, jobs), keys, jobs=jobs, require_seal=require_seal,
                 limits=_limits(max_entry_size, max_entries))
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
        return report.exit_code
    _print_rows(report.backups, verbose_failures=True)
    s = report.summary
    click.echo(f"{report.location}: {s['verified']} verified, {s['tampered']} tampered, "
               f"{s['unsealed']} unsealed, {s['unfinished']} unfinished, "
               f"{s['error']} could not be checked")
    for note in report.notes:
        click.echo(f"note: {note}")
    if report.exit_code == EXIT_NOT_AUTHENTIC:
        unsealed = f", {s['unsealed']} final backup(s) without a seal" if require_seal and s["unsealed"] else ""
        click.echo(f"merkle-backup: not authentic: {s['tampered']} backup(s) tampered{unsealed}", err=True)
    elif report.exit_code == EXIT_CANNOT_CHECK:
        what = f"{s['error']} backup(s) could not be checked" if s["error"] else "no backups found"
        click.echo(f"merkle-backup: error: {what}", err=True)
    return report.exit_code


if __name__ == "__main__":  # pragma: no cover
    main()
