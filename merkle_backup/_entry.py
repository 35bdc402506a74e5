"""The console entry point (``merkle-backup``): signals and a closed stdout are handled here,
before anything heavy is imported, so the exit code is always the verdict's or 130.

* SIGINT, at any moment once this module runs (during the imports of click, boto3, ...; while
  parsing the command line; mid-verify; mid-audit): one line ``merkle-backup: interrupted`` on
  stderr and exit 130, never a traceback, never click's "Aborted!" and exit 1. The first SIGINT
  raises ``errors.Interrupted`` in the main thread, so ``finally`` blocks still clean up (and
  ``audit`` / ``seal-all`` print the rows they have); a second one exits at once.
* A closed stdout (``| head -c1``, ``| grep -q VERIFIED``) is not a verdict: after EPIPE, stdout
  is pointed at /dev/null and the command carries on to its real exit code.

What this cannot cover: a SIGINT that arrives before the interpreter runs this module, while
CPython itself starts (tens of milliseconds: its init and ``site``, .pth files, the console
script's ``import re``), takes CPython's own path: killed by the signal (a shell shows 130),
or KeyboardInterrupt's traceback, or even "Fatal Python error: init_import_site" and exit 1.
No code of ours runs then. A launcher that must exclude it blocks SIGINT (sigprocmask) before
exec: this module unblocks it once its handler is installed, and the pending SIGINT then ends
the run with exit 130 and the one line (tests/test_signals.py).
"""

from __future__ import annotations

import os
import signal
import sys

# errors.ExitCode.INTERRUPTED, written out: this module imports nothing of ours before its
# SIGINT handler is in place (tests/test_signals.py checks the two agree).
EXIT_INTERRUPTED = 130
_LINE = b"merkle-backup: interrupted\n"
_state = {"interrupts": 0, "said": False, "armed": False}


def _say_interrupted() -> None:
    if not _state["said"]:
        _state["said"] = True
        try:
            os.write(2, _LINE)
        except OSError:
            pass


def _on_sigint(signum: int, frame: object) -> None:
    _state["interrupts"] += 1
    if not _state["armed"]:
        return  # still importing this module: main() exits 130 as soon as it starts
    if _state["interrupts"] > 1:  # a second ^C: no more waiting for anything
        _say_interrupted()
        os._exit(EXIT_INTERRUPTED)
    from merkle_backup.errors import Interrupted

    raise Interrupted()


def _install() -> None:
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # nohup / background jobs
        signal.signal(signal.SIGINT, _on_sigint)
        # A launcher that wants no window at all blocks SIGINT before exec (the interpreter's
        # own start is not ours): once the handler is in place, a pending SIGINT lands here.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


_install()  # as early as possible: on import, before click and the rest

from merkle_backup.errors import Interrupted  # noqa: E402 - after the handler; no imports of its own

_default_unraisable = sys.unraisablehook


def _unraisable(hook: sys.UnraisableHookArgs) -> None:
    """A first SIGINT that lands in a callback or a destructor (an import lock's weakref
    callback, seen in tests/test_signals.py) is not raised but "ignored": CPython prints its
    traceback and the run goes on. Deliver it again instead, at the next point where it can be
    raised, as the same first interrupt: one line and exit 130, no traceback."""
    if isinstance(hook.exc_value, Interrupted):
        import threading

        _state["interrupts"] -= 1
        # Sent from another thread, a moment later: raised here, in the hook, it would be
        # ignored again.
        threading.Timer(0.01, os.kill, (os.getpid(), signal.SIGINT)).start()
        return
    _default_unraisable(hook)


sys.unraisablehook = _unraisable


class _PipeSafe:
    """A text stream that, on EPIPE, points its file descriptor at /dev/null and carries on."""

    def __init__(self, stream: object, fd: int) -> None:
        self._stream = stream
        self._fd = fd

    def _gone(self) -> None:
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._fd)
            os.close(devnull)
        except OSError:
            pass

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)  # type: ignore[attr-defined,no-any-return]
        except BrokenPipeError:
            self._gone()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()  # type: ignore[attr-defined]
        except BrokenPipeError:
            self._gone()
            try:  # what was buffered now goes to /dev/null
                self._stream.flush()  # type: ignore[attr-defined]
            except OSError:
                pass

    def __getattr__(self, name: str) -> object:
        return getattr(self._stream, name)


def _flush_all() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass


def _exit(code: int) -> None:
    _state["interrupts"] = max(1, _state["interrupts"])  # a ^C from here on: exit 130 at once
    _flush_all()
    if code == EXIT_INTERRUPTED:
        _say_interrupted()
        # Worker threads an interrupted audit abandoned would be joined at exit: do not wait.
        os._exit(code)
    # The verdict is in: a SIGINT from here on must not turn it into death by signal (-2).
    # CPython's finalization resets a Python-level handler to SIG_DFL, but leaves SIG_IGN
    # alone, so a ^C during interpreter shutdown is ignored (was a flaky test: 1 run in 8).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(code)


def main() -> None:
    try:
        _state["armed"] = True
        if _state["interrupts"]:
            raise Interrupted()
        if sys.stdout is not None and not isinstance(sys.stdout, _PipeSafe):
            sys.stdout = _PipeSafe(sys.stdout, 1)
        from merkle_backup.cli import main as command

        command(prog_name="merkle-backup")
    except Interrupted:
        _exit(EXIT_INTERRUPTED)
    except KeyboardInterrupt:  # SIGINT raised by another handler than ours
        _exit(EXIT_INTERRUPTED)
    except SystemExit as e:
        code = e.code
        _exit(code if isinstance(code, int) else (0 if code is None else 1))


if __name__ == "__main__":  # pragma: no cover
    main()
