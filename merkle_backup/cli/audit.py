"""`audit` of every backup of a location (with the log, or as sharded, incremental fleet runs),
`audit-merge` of shard results and `verify-attestation` of an audit's in-toto envelope."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from merkle_backup.fleet.audit_run import AuditRun, FleetOptions
    from merkle_backup.fleet.sweep import AuditReport
    from merkle_backup.storage.options import ConnectionOptions

from merkle_backup.cli.common import (
    MAX_SHOWN_FAILURES,
    command,
    findings,
    funnel,
    open_location,
    open_log,
    print_interrupted,
    print_rows,
    read_file,
    warn,
)
from merkle_backup.cli.options import (
    jobs_option,
    json_option,
    key_option,
    limits_from,
    limits_options,
    log_options,
    max_age_option,
    storage,
    storage_options_for,
    trust_option,
)
from merkle_backup.cli.terminal import (
    RowCount,
)
from merkle_backup.display import shown
from merkle_backup.errors import Error, ExitCode, Interrupted

_KEY = "merkle_backup.fleet_options"


def fleet_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Options of ``audit`` for sharding, incremental runs, metrics and attestations; they are
    parsed into a FleetOptions kept in the click context (``options()``)."""
    import functools

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        names = ("shard", "results", "run_id", "state", "full", "recheck_after", "metrics",
                 "attest", "attest_keys", "pins")
        raw = {n: kwargs.pop(n) for n in names}
        click.get_current_context().meta[_KEY] = raw
        return f(*args, **kwargs)

    wrapper.__click_params__ = list(getattr(f, "__click_params__", []))  # type: ignore[attr-defined]
    path = click.Path(path_type=Path)
    for option in reversed(
        [
            click.option(
                "--shard",
                metavar="I/N",
                help="Audit only shard I of N (backups whose name's "
                "SHA-256 is I mod N); N alone takes I from $JOB_COMPLETION_INDEX (an Indexed Job).",
            ),
            click.option(
                "--results",
                metavar="URL",
                help="Write this shard's result object to URL (a "
                "folder or s3://BUCKET/PREFIX outside Velero's prefix), for audit-merge.",
            ),
            click.option(
                "--run-id",
                help="The run the shards belong to (the same in every shard; "
                "e.g. the Job's controller-uid). Default: $MERKLE_BACKUP_RUN_ID.",
            ),
            click.option(
                "--state",
                type=path,
                help="Incremental: skip backups unchanged since a "
                "verified run recorded in this file (the auditor's own), and update it.",
            ),
            click.option(
                "--full", is_flag=True, help="Re-read every backup, whatever --state says."
            ),
            click.option(
                "--recheck-after",
                default="7d",
                show_default=True,
                metavar="DURATION",
                help="With --state: re-read a backup at least this often (12h, 7d, 1d12h).",
            ),
            click.option(
                "--metrics",
                type=path,
                help="Write Prometheus text for node-exporter's "
                "textfile collector (name it *.prom).",
            ),
            click.option(
                "--attest",
                type=path,
                help="Write a signed in-toto attestation (DSSE) of this audit; needs --key.",
            ),
        ]
    ):
        wrapper = option(wrapper)
    signing: Any = key_option(multiple=True, required=False, name="attest_keys",
                              extra=" It signs --attest.")
    return signing(wrapper)  # type: ignore[no-any-return]


def fleet_options_given(connection: ConnectionOptions) -> FleetOptions | None:
    """The FleetOptions of the current ``audit`` (None when none was given)."""
    from merkle_backup.errors import UsageError
    from merkle_backup.fleet.audit_run import FleetOptions
    from merkle_backup.fleet.shard import check_run_id, parse_shard
    from merkle_backup.fleet.state import parse_duration

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
    keys = raw.get("attest_keys") or ()
    if (o.attest is None) != (not keys):
        raise UsageError("--attest FILE and --key KEY go together")
    if keys:
        from merkle_backup.cli.common import open_signing_keys

        o.keys = open_signing_keys(keys, raw.get("pins") or ())
    return o if o.any else None


def print_run(run: Any) -> None:
    """The lines after audit's table: what was skipped and written is said by write_outputs."""
    if run.skipped:
        click.echo(f"incremental: {run.skipped} backup(s) unchanged since their last full "
                   f"verification, not re-read; {len(run.report.backups) - run.skipped} read")


@command()
@click.argument("location", required=False)
@trust_option
@jobs_option(4)
@click.option(
    "--require-seal", is_flag=True, help="Fail (exit 1) on final backups that have no seal."
)
@log_options
@max_age_option
@json_option
@limits_options
@fleet_options
@storage_options_for("LOCATION")
@funnel
def audit(*, location: str | None, trust: tuple[Path, ...], jobs: int, require_seal: bool,
          log: str | None, log_state: Path | None, max_age: float,
          as_json: bool, max_entry_size: int | None, max_entries: int | None) -> int:
    """Verify every backup under LOCATION (s3://BUCKET/PREFIX, or a folder holding backups/).

    Exit 0 when every sealed backup verified; 1 when any is tampered (or, with
    --require-seal, a final backup has no seal); 3 when any could not be checked, or there is
    no backup at all.
    """
    from merkle_backup.fleet.sweep import audit as run
    from merkle_backup.trustfile import load_trusted

    keys = [k for p in trust for k in load_trusted(p)]
    fleet = fleet_options_given(storage())
    limits = limits_from(max_entry_size, max_entries)
    try:
        where = open_location(location, jobs)
        the_log = open_log(log, log_state, keys, where.describe()) if log else None
        if the_log is not None and fleet is not None and (
                fleet.shard or fleet.results or fleet.attest):
            from merkle_backup.errors import UsageError

            raise UsageError("--log does not combine with --shard, --results or --attest (a "
                             "shard sees only its backups, the log sees them all): run the log "
                             "audit on its own; --state and --metrics combine with it")
        if the_log is not None:
            the_log.head()  # a rolled-back or forked log fails before the backups are read
        with RowCount("audit") as counter:
            if fleet is None:
                report, extra = run(where, keys, jobs=jobs, require_seal=require_seal,
                                    limits=limits, progress=counter,
                                    clock=lambda: datetime.now(timezone.utc),
                                    max_age=timedelta(hours=max_age)), None
            else:  # issue 16: --shard, --state, --results, --metrics, --attest (fleet_run.py)
                from merkle_backup.fleet.audit_run import run_audit

                extra = run_audit(where, keys, jobs=jobs, require_seal=require_seal,
                                  limits=limits, options=fleet, progress=counter,
                                  max_age=timedelta(hours=max_age))
                report = extra.report
        if the_log is not None:
            from merkle_backup.tlog.check import audit_logged

            report = audit_logged(where, keys, the_log, report=report,
                                  clock=lambda: datetime.now(timezone.utc),
                                  max_age=timedelta(hours=max_age))
            if extra is not None:
                with_log_findings(extra, report)
    except Interrupted as e:
        print_interrupted(e.partial, as_json, verbose_failures=True)
        raise
    if as_json:
        click.echo(
            json.dumps(
                {**report.to_json(), **({"not_reread": extra.skipped} if extra else {})}, indent=2
            )
        )
    else:
        audit_summary(report, require_seal=require_seal)
        if extra is not None:
            print_run(extra)
    if extra is not None:
        try:
            extra.write_outputs(lambda line: None if as_json else click.echo(shown(line)))
        except Error as e:  # the verdict stands: tampering found is still exit 1
            click.echo(f"merkle-backup: error: {shown(e.diagnostics())}", err=True)
            return (
                ExitCode.NOT_AUTHENTIC
                if report.exit_code == ExitCode.NOT_AUTHENTIC
                else e.exit_code
            )
    if not as_json:
        audit_verdict(report, require_seal=require_seal)
    return report.exit_code


def with_log_findings(run: AuditRun, report: AuditReport) -> None:
    """--state and --metrics with --log: the metrics get the log's findings; the state keeps
    only backups still verified once the log judged them (the log is checked on every run,
    whatever the state says: a skipped backup's seal is still judged against the log)."""
    from merkle_backup.fleet.sweep import VERIFIED

    run.report = report
    if run.state is not None:
        fine = {r.name for r in report.backups if r.status == VERIFIED}
        run.state.records = {n: r for n, r in run.state.records.items() if n in fine}


def audit_summary(report: AuditReport, *, require_seal: bool) -> None:
    print_rows(report.backups, verbose_failures=True)
    s = report.summary
    click.echo(f"{shown(report.location)}: {s['verified']} verified, {s['tampered']} tampered, "
               f"{s['unsealed']} unsealed, {s['unfinished']} unfinished, "
               f"{s['error']} could not be checked" + findings(s))
    for note in report.notes:
        click.echo(f"note: {shown(note)}")


def audit_verdict(report: AuditReport, *, require_seal: bool) -> None:
    s = report.summary
    if report.exit_code == ExitCode.NOT_AUTHENTIC:
        unsealed = (
            f", {s['unsealed']} final backup(s) without a seal"
            if require_seal and s["unsealed"]
            else ""
        )
        click.echo(f"merkle-backup: not authentic: {s['tampered']} backup(s) tampered{unsealed}"
                   f"{findings(s)}", err=True)
    elif report.exit_code == ExitCode.CANNOT_CHECK:
        what = f"{s['error']} backup(s) could not be checked" if s["error"] else "no backups found"
        click.echo(f"merkle-backup: error: {what}", err=True)




@command("audit-merge")
@click.argument("url")
@click.option("--run-id", help="Merge this run's results (others in URL are ignored).")
@click.option("--shards", type=click.IntRange(1, 10_000), help="Fail unless the run has N shards.")
@click.option(
    "--metrics", type=click.Path(path_type=Path), help="Write Prometheus text of the merged report."
)
@json_option
@storage_options_for("URL")
@funnel
def audit_merge(url: str, run_id: str | None, shards: int | None, metrics: Path | None,
                as_json: bool) -> int:
    """Combine the shard results in URL (audit --shard --results) into one audit report.

    Exit codes as audit's; 3 also when a shard is missing, twice, or from another run.
    """
    from datetime import datetime, timezone

    from merkle_backup.fleet.shard import ResultsStore, check_run_id, merge

    if run_id is not None:
        check_run_id(run_id)
    merged = merge(ResultsStore(url, storage(), warn=warn), run_id=run_id,
                   shards=shards)
    report = merged.report
    if metrics is not None:
        from merkle_backup.fleet.metrics import write

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
    audit_summary(report, require_seal=report.require_seal)
    click.echo(f"note: merged {merged.shards} shard(s) of run {shown(merged.run_id)}")
    if metrics is not None:
        click.echo(f"wrote metrics {shown(metrics)}")
    audit_verdict(report, require_seal=report.require_seal)
    return report.exit_code

@command("verify-attestation")
@click.argument("attestation", type=click.Path(path_type=Path))
@trust_option
@click.option("--digest", "digests", multiple=True, metavar="sha256:HEX",
              help="Fail (exit 1) unless this tarball or seal is a subject of a verified backup.")
@json_option
@funnel
def verify_attestation(attestation: Path, trust: tuple[Path, ...], digests: tuple[str, ...],
                       as_json: bool) -> int:
    """Check an attestation written by `audit --attest` with the trusted public key, and
    show what it attests.

    Exit 0 when authentic (and every --digest attested as verified); 1 when not signed by a
    trusted key, modified, or a --digest is not attested as verified; 3 when not an
    attestation.
    """
    from merkle_backup.errors import UsageError
    from merkle_backup.fleet.attest import verify_envelope
    from merkle_backup.trustfile import load_trusted

    keys = [k for p in trust for k in load_trusted(p)]
    wanted = []
    for d in digests:
        algo, _, value = d.partition(":")
        if algo != "sha256" or len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
            raise UsageError(f"--digest {d!r}: give sha256:<64 lowercase hex digits>")
        wanted.append(value)
    from merkle_backup.storage.files import MAX_ATTESTATION_FILE_BYTES

    checked = verify_envelope(read_file(attestation, MAX_ATTESTATION_FILE_BYTES),
                              keys, str(attestation))
    p = checked.predicate
    findings, scope = p["findings"], p["scope"]
    attested: dict[str, tuple[Any, Any, Any]] = {}
    for b in findings["backups"]:
        if not isinstance(b, dict):
            continue
        for part in ("tarball", "seal"):
            if isinstance(b.get(part), dict):
                attested[b[part].get("sha256")] = (b.get("name"), part, b.get("status"))
    missing = [d for d in wanted if attested.get(d, (None, None, None))[2] != "verified"]
    code = 1 if missing else 0
    if as_json:
        click.echo(
            json.dumps(
                {
                    "authentic": True,
                    "signer": checked.signer.source,
                    "key_id": checked.signer.key_id.hex(),
                    "statement": checked.statement,
                    "digests_not_verified": missing,
                    "exit_code": code,
                },
                indent=2,
            )
        )
        return code
    summary = findings.get("summary") or {}
    shard = scope.get("shard")
    where = f", shard {shard.get('index')}/{shard.get('count')}" if isinstance(shard, dict) else ""
    click.echo(f"AUTHENTIC attestation: audit of {shown(scope.get('location'))}{shown(where)}, "
               f"{shown(p.get('started'))} to {shown(p.get('finished'))}, signed by "
               f"{shown(checked.signer.source)} (key {checked.signer.key_id.hex()[:16]})")
    click.echo("  findings: " + ", ".join(f"{shown(v)} {shown(k)}" for k, v in summary.items())
               + f"; audit exit code {shown(findings.get('exit_code'))}")
    for b in findings["backups"][:MAX_SHOWN_FAILURES]:
        if isinstance(b, dict):
            click.echo(
                f"  {shown(b.get('name')):<30} {shown(b.get('status')):<10} "
                f"{shown(b.get('detail'))}"
            )
    hidden = len(findings["backups"]) - MAX_SHOWN_FAILURES
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
