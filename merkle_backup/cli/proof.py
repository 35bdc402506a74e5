"""`prove` (write a proof of resources or namespaces) and `verify-proof` (check one offline)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from merkle_backup.cli.common import (
    command,
    funnel,
    open_log,
    open_source,
    read_file,
    single_pass,
)
from merkle_backup.cli.options import (
    json_option,
    log_options,
    seal_option,
    storage_options,
    trust_option,
)
from merkle_backup.display import shown


@command()
@click.argument("backup")
@click.option(
    "--resource",
    "resources",
    multiple=True,
    help="Tar path (or bucket object name) to prove. Repeatable.",
)
@click.option(
    "--namespace",
    "namespaces",
    multiple=True,
    help="Prove this whole namespace (its exact name), or its absence. Repeatable.",
)
@click.option(
    "--with-content", is_flag=True, help="Embed the manifests, so the proof file alone suffices."
)
@click.option("--trust", "trust", multiple=True, type=click.Path(path_type=Path),
              help="Check the seal's signature with this key before proving (recommended).")
@click.option(
    "-o",
    "--output",
    "output",
    required=True,
    type=click.Path(path_type=Path),
    help="Proof file to write.",
)
@click.option("--force", is_flag=True, help="Overwrite an existing output file (never a seal).")
@seal_option
@log_options
@click.option("--witness", "witnesses", multiple=True, type=click.Path(path_type=Path),
              help="With --log: embed this witness's cosignature (public key). Repeatable.")
@storage_options
@funnel
@single_pass
def prove(backup: str, resources: tuple[str, ...], namespaces: tuple[str, ...], with_content: bool,
          trust: tuple[Path, ...], output: Path, force: bool, seal_path: Path | None,
          *, log: str | None, log_state: Path | None, witnesses: tuple[Path, ...]) -> None:
    """Write a proof of single resources or whole namespaces of BACKUP, checkable offline."""
    from merkle_backup.errors import UsageError
    from merkle_backup.formats.proof import encode_proof
    from merkle_backup.proofs import prove as build
    from merkle_backup.storage.files import MAX_PROOF_FILE_BYTES, check_proof_output
    from merkle_backup.storage.local import write_atomic
    from merkle_backup.trustfile import load_trusted

    if witnesses and not log:
        raise UsageError("--witness needs --log")
    if log and not trust:
        raise UsageError("--log needs --trust (the sealer's public key, which signs the log)")
    keys = [k for p in trust for k in load_trusted(p)]
    source = open_source(backup, seal_path)
    check_proof_output(output, source.seal_path, force=force)
    proof = build(source, resources=resources, namespaces=namespaces,
                  with_content=with_content, trusted=keys)
    if log:
        proof = with_log_inclusion(proof, keys, log, log_state,
                                   [k for p in witnesses for k in load_trusted(p)])
    data = encode_proof(proof)
    if len(data) > MAX_PROOF_FILE_BYTES:
        raise UsageError(f"the proof would be {len(data)} bytes, over the {MAX_PROOF_FILE_BYTES} "
                         "byte limit of verify-proof: prove fewer namespaces or resources")
    check_proof_output(output, source.seal_path, force=force)
    write_atomic(output, data, replace=force, overwrite_hint="--force")
    click.echo(
        f"wrote {shown(output)}: {len(proof.resources)} resource(s), {len(proof.namespaces)} "
        f"namespace(s), {len(proof.contents)} embedded manifest(s), {len(data)} bytes"
    )
    if proof.log is not None:
        click.echo(f"  log: entry {proof.log.index}, inclusion proof of {len(proof.log.proof)} "
                   f"hash(es), from {shown(log)}")


def with_log_inclusion(proof: Any, keys: list[Any], log: str, log_state: Path | None,
                       witnesses: list[Any]) -> Any:
    """``prove --log``: the proof with the seal's log inclusion proof, self-checked offline."""
    from dataclasses import replace

    from merkle_backup.core.checkpoint import parse_checkpoint
    from merkle_backup.errors import UsageError
    from merkle_backup.formats.proof import encode_proof
    from merkle_backup.proofs import verify_proof as check
    from merkle_backup.tlog.check import prove_in_log

    if proof.co_signatures:
        raise UsageError("prove --log: this seal is signed by several keys, and such seals are "
                         "not logged (seal --log signs with one --key)")
    name = parse_checkpoint(proof.checkpoint).backup
    proof = replace(proof, log=prove_in_log(open_log(log, log_state, keys), name, proof.checkpoint,
                                            witnesses))
    check(encode_proof(proof), keys, log_keys=keys, witnesses=witnesses)  # never hand out a bad one
    return proof


@command("verify-proof")
@click.argument("proof_file", type=click.Path(path_type=Path))
@trust_option
@click.option("--content", "content_files", multiple=True, type=click.Path(path_type=Path),
              help="A manifest you hold; it must be the content of a proven resource. Repeatable.")
@click.option("--backup", "expected_backup", help="Fail unless the proof is for this backup name.")
@click.option(
    "--uid", "expected_uid", help="Fail unless the proof is for the backup with this UID."
)
@click.option("-v", "--verbose", is_flag=True,
              help="List every proven resource and embedded manifest.")
@click.option("--log-key", "log_keys", multiple=True, type=click.Path(path_type=Path),
              help="Require the embedded log inclusion proof (prove --log), its log checkpoint "
                   "signed by this key (the sealer's). Repeatable.")
@click.option("--witness", "witnesses", multiple=True, type=click.Path(path_type=Path),
              help="With --log-key: require this witness's cosignature of that checkpoint. "
                   "Repeatable.")
@json_option
@funnel
def verify_proof(proof_file: Path, trust: tuple[Path, ...], content_files: tuple[Path, ...],
                 expected_backup: str | None, expected_uid: str | None, *, verbose: bool,
                 log_keys: tuple[Path, ...], witnesses: tuple[Path, ...], as_json: bool) -> None:
    """Check a proof file offline with only the trusted public key."""
    from merkle_backup.proofs import verify_proof as check
    from merkle_backup.storage.files import MAX_CONTENT_FILE_BYTES, MAX_PROOF_FILE_BYTES
    from merkle_backup.trustfile import load_trusted

    if witnesses and not log_keys:
        from merkle_backup.errors import UsageError

        raise UsageError("--witness needs --log-key")
    keys = [k for p in trust for k in load_trusted(p)]
    contents = [(str(p), read_file(p, MAX_CONTENT_FILE_BYTES)) for p in content_files]
    report = check(read_file(proof_file, MAX_PROOF_FILE_BYTES), keys, contents=contents,
                   expected_backup=expected_backup, expected_uid=expected_uid,
                   log_keys=[k for p in log_keys for k in load_trusted(p)],
                   witnesses=[k for p in witnesses for k in load_trusted(p)])
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
        return
    print_proof_report(report, held=len(contents), verbose=verbose)


def print_proof_report(report: Any, *, held: int, verbose: bool) -> None:
    """The verdict, what is proven (a line per namespace, one for single resources), the
    --content results, then the root; every resource only with --verbose."""
    cp = report.checkpoint
    embedded = report.contents[:len(report.contents) - held]
    matched = report.contents[len(report.contents) - held:]
    click.echo(f"VERIFIED: proof for backup {shown(cp.backup)} (uid {shown(cp.uid)}), sealed "
               f"{cp.created:%Y-%m-%dT%H:%M:%SZ}, signed by {shown(report.signer)}")
    in_ns = {p for ns in report.namespaces for p in ns.resources}
    for ns in report.namespaces:
        if ns.present:
            with_content = sum(1 for p in embedded if p in set(ns.resources))
            more = (", manifests included" if with_content == len(ns.resources)
                    else f", {with_content} manifests included" if with_content
                    else " (names and hashes; no manifests)")
            click.echo(f"  namespace {shown(ns.namespace)}: complete, {len(ns.resources)} "
                       f"entries exactly as sealed{more}")
        else:
            click.echo(f"  namespace {shown(ns.namespace)}: absent from the backup (no entry "
                       "of it was sealed)")
    if report.resources:
        one = f": {shown(report.resources[0])}" if len(report.resources) == 1 else ""
        with_content = sum(1 for p in embedded if p not in in_ns)
        more = f", {with_content} with its manifest embedded" if with_content else ""
        click.echo(f"  {len(report.resources)} single resource(s) proven as sealed{one}{more}")
    for line in matched:  # "LABEL = PATH": the user's file is that resource's sealed content
        label, _, path = line.partition(" = ")
        click.echo(f"  content {shown(label)}: byte for byte the sealed {shown(path)}")
    click.echo(f"  root {cp.root.hex()}, {cp.tree_size} leaves")
    print_log_result(report)
    if verbose:
        for path in report.resources:
            click.echo(f"  resource  {shown(path)}")
        for ns in report.namespaces:
            for path in ns.resources:
                click.echo(f"  in {shown(ns.namespace)}: {shown(path)}")
        for path in embedded:
            click.echo(f"  content   {shown(path)}")
    elif len(report.resources) > 1 or any(ns.resources for ns in report.namespaces):
        click.echo("  (--verbose lists every proven resource, --json gives them all)")


def print_log_result(report: Any) -> None:
    """verify-proof's log lines (docs/format.md §11.6)."""
    if report.log is not None:
        lg = report.log
        seen = "".join(f", cosigned by {shown(w)}" for w, _ in lg.witnessed)
        click.echo(f"  log       entry {lg.index} of {lg.size} of {shown(lg.origin)}, signed by "
                   f"{shown(lg.log_key)}{seen}")
    elif report.log_unchecked:
        click.echo("  log       the file holds a log inclusion proof, not checked (give --log-key)")
