"""Stop training cleanly on SIGTERM (schedulers, ``kill``) and SIGINT (Ctrl-C).

The handlers only record the signal: raising from a handler (Python's default
for SIGINT) can unwind through a checkpoint half written by orbax's threads,
and nothing useful can be done while XLA is compiling anyway. The training
loop polls :attr:`StopRequest.signum` between updates and after compilation;
in a multi-process run it combines every process's flag first
(``processes.agree``), so a signal to any one process stops them all at the
same update.
"""

from __future__ import annotations

import signal
import threading

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def signal_name(signum: int | None) -> str | None:
    """The name of signal number ``signum`` (e.g. SIGTERM); None for no signal."""
    return signal.Signals(signum).name if signum else None


def exit_code(name: str | None) -> int:
    """The shell's convention for a process ended by a signal: 128 + its number."""
    return 128 + int(signal.Signals[name]) if name else 0


class StopRequest:
    """Context manager: while active, SIGTERM/SIGINT set ``signum`` instead of ending the process."""

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict = {}

    @property
    def name(self) -> str | None:
        return signal_name(self.signum)

    def _handle(self, signum, frame) -> None:
        if self.signum is None:
            self.signum = signum

    def __enter__(self) -> StopRequest:
        # signal.signal works in the main thread only; elsewhere (a notebook worker,
        # a test thread) the caller keeps its own handling and stops are not caught.
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._previous.clear()
