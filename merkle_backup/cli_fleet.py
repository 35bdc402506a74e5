"""The command line of issue 16: ``audit``'s fleet options (``fleet_options``, ``fleet_run``),
and the commands ``audit-merge`` and ``verify-attestation`` (``register``). Kept apart from
cli.py, which only applies the decorator and calls ``register``."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from merkle_backup.display import shown

_KEY = "merkle_backup.fleet_options"


def fleet_options(f: Callable) -> Callable:
    """Options of ``audit`` for sharding, incremental runs, metrics and attestations; they are
    parsed into a FleetOptions kept in the click context (``options()``)."""
    import functools

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        names = ("shard", "results", "run_id", "state", "full", "recheck_after", "metrics",
                 "attest", "attest_key")
        raw = {n: kwargs.pop(n) for n in names}
        click.get_current_context().meta[_KEY] = raw
        return f(*args, **kwargs)

    wrapper.__click_params__ = list(getattr(f, "__click_params__", []))  # type: ignore[attr-defined]
    path = click.Path(path_type=Path)
    for option in reversed([
        click.option("--shard", metavar="I/N", help="Audit only shard I of N (backups whose name's "
                     "SHA-256 is I mod N); N alone takes I from $JOB_COMPLETION_INDEX (an Indexed Job)."),
        click.option("--results", metavar="URL", help="Write this shard's result object to URL (a "
                     "folder or s3://BUCKET/PREFIX outside Velero's prefix), for audit-merge."),
        click.option("--run-id", help="The run the shards belong to (the same in every shard; "
                     "e.g. the Job's controller-uid). Default: $MERKLE_BACKUP_RUN_ID."),
        click.option("--state", type=path, help="Incremental: skip backups unchanged since a "
                     "verified run recorded in this file (the auditor's own), and update it."),
        click.option("--full", is_flag=True, help="Re-read every backup, whatever --state says."),
        click.option("--recheck-after", default="7d", show_default=True, metavar="DURATION",
                     help="With --state: re-read a backup at least this often (12h, 7d, 1d12h)."),
        click.option("--metrics", type=path, help="Write Prometheus text for node-exporter's "
                     "textfile collector (name it *.prom)."),
        click.option("--attest", type=path, help="Write a signed in-toto attestation (DSSE) of "
                     "this audit; needs --key."),
        click.option("--key", "attest_key", type=path, help="Private key (PEM) that signs --attest."),
    ]):
        wrapper = option(wrapper)
    return wrapper


def options(connection: Any):
    """The FleetOptions of the current ``audit`` (None when none was given)."""
    from merkle_backup.audit_state import parse_duration
    from merkle_backup.errors import UsageError
    from merkle_backup.fleet_run import FleetOptions
    from merkle_backup.shard import check_run_id, parse_shard

    raw = click.get_current_context().meta.get(_KEY) or {}
    o = FleetOptions(connection=connection)
    if raw.get("shard") is not None:
        o.shard = parse_shard(raw["shard"])
    o.results = raw.get("results")
    if o.results is not None:
        run_id = raw.get("run_id") or os.environ.get("MERKLE_BACKUP_RUN_ID")
        if not run_id:
            raise UsageError("--results needs --run-id (or $MERKLE_BACKUP_RUN_ID): the same in "
                             "every shard of a run, so audit-merge can tell runs apart")
        o.run_id = check_run_id(run_id)
    elif raw.get("run_id"):
        raise UsageError("--run-id goes with --results")
    o.state = raw.get("state")
    o.full = bool(raw.get("full"))
    if o.full and o.state is None:
        raise UsageError("--full goes with --state (without it every backup is read anyway)")
    o.recheck_after = parse_duration(raw.get("recheck_after") or "7d")
    o.metrics = raw.get("metrics")
    o.attest = raw.get("attest")
    key = raw.get("attest_key")
    if (o.attest is None) != (key is None):
        raise UsageError("--attest FILE and --key KEY go together")
    if key is not None:
        from merkle_backup.signing import load_private_key

        o.key = load_private_key(key)
    return o if o.any else None


def print_run(run: Any) -> None:
    """The lines after audit's table: what was skipped and written is said by write_outputs."""
    if run.skipped:
        click.echo(f"incremental: {run.skipped} backup(s) unchanged since their last full "
                   f"verification, not re-read; {len(run.report.backups) - run.skipped} read")


def register(main: click.Group, helpers: Any) -> None:
    """Add audit-merge and verify-attestation to the command group ``main``; ``helpers`` is
    cli.py (its option decorators, funnel and table printer)."""

    @main.command("audit-merge")
    @click.argument("url")
    @click.option("--run-id", help="Merge this run's results (others in URL are ignored).")
    @click.option("--shards", type=click.IntRange(1, 10_000), help="Fail unless the run has N shards.")
    @click.option("--metrics", type=click.Path(path_type=Path), help="Write Prometheus text of the merged report.")
    @helpers._json_option
    @helpers._storage_options
    @helpers._funnel
    def audit_merge(url: str, run_id: str | None, shards: int | None, metrics: Path | None,
                    as_json: bool) -> int:
        """Combine the shard results in URL (audit --shard --results) into one audit report.

        \b
        Exit codes as audit's; 3 also when a shard is missing, twice, or from another run.
        """
        from datetime import datetime, timezone

        from merkle_backup.shard import ResultsStore, check_run_id, merge

        if run_id is not None:
            check_run_id(run_id)
        merged = merge(ResultsStore(url, helpers._storage(), warn=helpers._warn), run_id=run_id,
                       shards=shards)
        report = merged.report
        if metrics is not None:
            from merkle_backup.metrics import write

            finished = max(r["finished"] for r in merged.results)
            started = min(r["started"] for r in merged.results)
            end = datetime.strptime(finished, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
            begin = datetime.strptime(started, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
            write(metrics, report, duration=(end - begin).total_seconds(), finished=end,
                  full_verification={}, skipped=0)
        if as_json:
            click.echo(json.dumps({**report.to_json(), "run_id": merged.run_id,
                                   "shards": merged.shards, "objects": list(merged.objects)}, indent=2))
            return report.exit_code
        helpers._audit_summary(report, require_seal=report.require_seal)
        click.echo(f"note: merged {merged.shards} shard(s) of run {shown(merged.run_id)}")
        if metrics is not None:
            click.echo(f"wrote metrics {shown(metrics)}")
        helpers._audit_verdict(report, require_seal=report.require_seal)
        return report.exit_code

    @main.command("verify-attestation")
    @click.argument("attestation", type=click.Path(path_type=Path))
    @helpers._trust_option
    @click.option("--digest", "digests", multiple=True, metavar="sha256:HEX",
                  help="Fail (exit 1) unless this tarball or seal is a subject of a verified backup.")
    @helpers._json_option
    @helpers._funnel
    def verify_attestation(attestation: Path, trust: tuple[Path, ...], digests: tuple[str, ...],
                           as_json: bool) -> int:
        """Check an attestation written by `audit --attest` with the trusted public key, and
        show what it attests.

        \b
        Exit codes: 0 authentic (and every --digest attested as verified); 1 not signed by a
        trusted key, modified, or a --digest not attested as verified; 3 not an attestation.
        """
        from merkle_backup.attest import verify_envelope
        from merkle_backup.errors import UsageError
        from merkle_backup.signing import load_public_key

        keys = [load_public_key(p) for p in trust]
        wanted = []
        for d in digests:
            algo, _, value = d.partition(":")
            if algo != "sha256" or len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
                raise UsageError(f"--digest {d!r}: give sha256:<64 lowercase hex digits>")
            wanted.append(value)
        from merkle_backup.storage.files import MAX_ATTESTATION_FILE_BYTES

        checked = verify_envelope(helpers._read_file(attestation, MAX_ATTESTATION_FILE_BYTES),
                                  keys, str(attestation))
        p = checked.predicate
        findings, scope = p["findings"], p["scope"]
        attested = {}
        for b in findings["backups"]:
            if not isinstance(b, dict):
                continue
            for part in ("tarball", "seal"):
                if isinstance(b.get(part), dict):
                    attested[b[part].get("sha256")] = (b.get("name"), part, b.get("status"))
        missing = [d for d in wanted if attested.get(d, (None, None, None))[2] != "verified"]
        code = 1 if missing else 0
        if as_json:
            click.echo(json.dumps({"authentic": True, "signer": checked.signer.source,
                                   "key_id": checked.signer.key_id.hex(), "statement": checked.statement,
                                   "digests_not_verified": missing, "exit_code": code}, indent=2))
            return code
        summary = findings.get("summary") or {}
        shard = scope.get("shard")
        where = f", shard {shard.get('index')}/{shard.get('count')}" if isinstance(shard, dict) else ""
        click.echo(f"AUTHENTIC attestation: audit of {shown(scope.get('location'))}{shown(where)}, "
                   f"{shown(p.get('started'))} to {shown(p.get('finished'))}, signed by "
                   f"{shown(checked.signer.source)} (key {checked.signer.key_id.hex()[:16]})")
        click.echo("  findings: " + ", ".join(f"{shown(v)} {shown(k)}" for k, v in summary.items())
                   + f"; audit exit code {shown(findings.get('exit_code'))}")
        for b in findings["backups"][:helpers._MAX_SHOWN_FAILURES]:
            if isinstance(b, dict):
                click.echo(f"  {shown(b.get('name')):<30} {shown(b.get('status')):<10} {shown(b.get('detail'))}")
        hidden = len(findings["backups"]) - helpers._MAX_SHOWN_FAILURES
        if hidden > 0:
            click.echo(f"  ... and {hidden} more (use --json)")
        for d in wanted:
            name, part, status = attested.get(d, (None, None, None))
            if status == "verified":
                click.echo(f"  sha256:{d}: the {part} of {shown(name)}, verified")
        if missing:
            click.echo(f"merkle-backup: not authentic: {len(missing)} digest(s) not attested as a "
                       f"verified backup: sha256:{missing[0]}", err=True)
        return code
