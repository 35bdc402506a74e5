"""`prove` (write a proof of resources or namespaces) and `verify-proof` (check one offline)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from merkle_backup.cli.common import (
    command,
    funnel,
    json_option,
    open_source,
    read_file,
    seal_option,
    single_pass,
    trust_option,
)
from merkle_backup.display import shown


@command()
@click.argument("backup")
@click.option("--resource", "resources", multiple=True, help="Tar path (or bucket object name) to prove. Repeatable.")
@click.option("--namespace", "namespaces", multiple=True, help="Prove this whole namespace, or its absence. Repeatable.")
@click.option("--with-content", is_flag=True, help="Embed the manifests, so the proof file alone suffices.")
@click.option("--trust", "trust", multiple=True, type=click.Path(path_type=Path),
              help="Check the seal's signature with this key before proving (recommended).")
@click.option("-o", "--output", "output", required=True, type=click.Path(path_type=Path), help="Proof file to write.")
@click.option("--force", is_flag=True, help="Overwrite an existing output file (never a seal).")
@seal_option
@funnel
@single_pass
def prove(backup: str, resources: tuple[str, ...], namespaces: tuple[str, ...], with_content: bool,
          trust: tuple[Path, ...], output: Path, force: bool, seal_path: Path | None) -> None:
    """Write a proof of single resources or whole namespaces of BACKUP, checkable offline."""
    from merkle_backup.formats.proof import encode_proof
    from merkle_backup.proofs import prove as build
    from merkle_backup.signing import load_public_key
    from merkle_backup.storage.files import MAX_PROOF_FILE_BYTES, check_proof_output
    from merkle_backup.storage.local import write_atomic

    keys = [load_public_key(p) for p in trust]
    source = open_source(backup, seal_path)
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


@command("verify-proof")
@click.argument("proof_file", type=click.Path(path_type=Path))
@trust_option
@click.option("--content", "content_files", multiple=True, type=click.Path(path_type=Path),
              help="A manifest you hold; it must be the content of a proven resource. Repeatable.")
@click.option("--backup", "expected_backup", help="Fail unless the proof is for this backup name.")
@click.option("--uid", "expected_uid", help="Fail unless the proof is for the backup with this UID.")
@json_option
@funnel
def verify_proof(proof_file: Path, trust: tuple[Path, ...], content_files: tuple[Path, ...],
                 expected_backup: str | None, expected_uid: str | None, as_json: bool) -> None:
    """Check a proof file offline with only the trusted public key."""
    from merkle_backup.proofs import verify_proof as check
    from merkle_backup.signing import load_public_key
    from merkle_backup.storage.files import MAX_CONTENT_FILE_BYTES, MAX_PROOF_FILE_BYTES

    keys = [load_public_key(p) for p in trust]
    contents = [(str(p), read_file(p, MAX_CONTENT_FILE_BYTES)) for p in content_files]
    report = check(read_file(proof_file, MAX_PROOF_FILE_BYTES), keys, contents=contents,
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
