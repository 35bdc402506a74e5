"""``python -m merkle_backup.cli``: the console entry point (SIGINT and EPIPE handled there)."""

from merkle_backup._entry import main

main()
