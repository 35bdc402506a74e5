"""The command line: thin click commands around the library, one module per family of commands,
and one error funnel (``common.funnel``).

\b
    common.py   the funnel, shared options, opening a backup, a location or the log
    seal.py     keygen, pubkey, seal, seal-all
    verify.py   verify, inspect
    proof.py    prove, verify-proof
    audit.py    audit, audit-merge, verify-attestation
    log.py      forget, witness

Exit codes (README, docs/format.md §8; the table is ``errors.ExitCode``): 0 verified; 1 not
authentic (tampering or corruption found); 2 usage; 3 could not check (missing file, unreadable
input, bad key, I/O); 130 interrupted (SIGINT; the console entry point, ``_entry.py``, handles it).

Every human-readable line that holds anything from the backup or the bucket (paths, names,
uids, error details) goes through ``display.shown``: no control character, ESC sequence or bidi
override of the attacker's reaches the terminal. ``--json`` prints exact JSON.

Each command module imports only click and this package at the top; the library modules a
command needs are imported inside it, so that ``--help`` and a command's start-up stay fast.
"""

from __future__ import annotations

from pathlib import Path

import click

from merkle_backup.cli import audit, log, proof, seal, verify
from merkle_backup.cli.common import (
    Group,
    command,
    funnel,
)


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="merkle-backup")
def main() -> None:
    """Tamper-evident Velero backups: seal a backup once, prove any resource of it later.

    New here? `merkle-backup demo` walks through seal, verify and a tampered backup.
    """


@command()
@click.option("--keep", "keep", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="Run in DIR (new or empty) and leave it there: the sealed example backup "
                   "and the key pair, for the commands in README.")
@funnel
def demo(keep: Path | None) -> int:
    """Seal and verify a built-in example backup, then tamper with it and show the failure.
    Each step is shown as the command you would type, with its output and exit code."""
    from merkle_backup.demo import run_demo

    return run_demo(click.echo, lambda args: main.main(args, prog_name="merkle-backup",
                                                       standalone_mode=True), keep)


for _command in (seal.keygen, seal.pubkey, seal.seal, seal.seal_all, verify.verify,
                 verify.inspect, demo, proof.prove, proof.verify_proof, audit.audit,
                 audit.audit_merge, audit.verify_attestation, log.forget, log.witness):
    main.add_command(_command)
