"""Timeouts for scorer calls without a thread per call (a thread start costs more than a fast
scorer): on the main thread a SIGALRM interval timer (`signal.setitimer`, two system calls per
call), elsewhere (thread-pool workers, a caller that is not the main thread) one watchdog thread
that raises `ScorerTimedOut` in the late thread with `PyThreadState_SetAsyncExc`. A one-shot
SIGALRM timer someone else set (pytest-timeout, say) keeps working: each call's timer is cut to
it, and when it is due its handler runs; a repeating one makes the runner use the watchdog.

Both interrupt Python code between bytecodes: a scorer blocked inside one long C call (a socket
read without a timeout) is interrupted when that call returns. `ScorerTimedOut` derives from
BaseException so that a scorer's own `except Exception` cannot swallow it.
"""

from __future__ import annotations

import ctypes
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = ["Deadlines", "ScorerTimedOut"]


class ScorerTimedOut(BaseException):
    """Raised inside a scorer call that ran past its timeout."""


def _raise_in(thread_id: int, exc: type[BaseException] | None) -> None:
    # exc None clears an exception not delivered yet (the call finished first).
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc) if exc else None)


class Deadlines:
    """`with Deadlines() as d: d.call(fn, kwargs, timeout)`; timeout <= 0 means none."""

    def __init__(self) -> None:
        self._armed = False
        self._call_due = 0.0
        self._outer_due: float | None = None
        self._previous: Any = None
        self._use_signal = False
        self._cond = threading.Condition()
        self._pending: dict[object, tuple[float, int]] = {}  # token -> (deadline, thread id)
        self._next_due = float("inf")
        self._watchdog: threading.Thread | None = None
        self._closed = False

    def __enter__(self) -> Deadlines:
        main = threading.current_thread() is threading.main_thread()
        if main and hasattr(signal, "setitimer"):
            remaining, interval = signal.getitimer(signal.ITIMER_REAL)
            if interval == 0:
                self._outer_due = time.monotonic() + remaining if remaining > 0 else None
                self._previous = signal.signal(signal.SIGALRM, self._on_alarm)
                self._use_signal = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._use_signal:
            self._use_signal = False
            signal.signal(signal.SIGALRM, self._previous)
            self._rearm(None)
        with self._cond:
            self._closed = True
            self._cond.notify()

    def call(self, fn: Callable[..., Any], kwargs: dict[str, Any], timeout: float) -> Any:
        if timeout <= 0:
            return fn(**kwargs)
        if self._use_signal and threading.current_thread() is threading.main_thread():
            self._call_due = time.monotonic() + timeout
            self._armed = True
            self._rearm(self._call_due)
            try:
                return fn(**kwargs)
            finally:
                self._armed = False  # an alarm from here on is ignored
                self._rearm(None)
        return self._watched(fn, kwargs, timeout)

    def _rearm(self, call_due: float | None) -> None:
        """The timer set to the earlier of the call's deadline and the outer timer's (or off)."""
        dues = [d for d in (call_due, self._outer_due) if d is not None]
        signal.setitimer(signal.ITIMER_REAL, max(min(dues) - time.monotonic(), 1e-6) if dues else 0)

    def _on_alarm(self, signum: int, frame: FrameType | None) -> None:
        if self._outer_due is not None and time.monotonic() >= self._outer_due:
            self._outer_due = None
            if callable(self._previous):
                self._previous(signum, frame)
            elif self._previous == signal.SIG_DFL:  # what the outer timer would have done: end the process
                signal.signal(signal.SIGALRM, signal.SIG_DFL)
                signal.raise_signal(signal.SIGALRM)
        if self._armed:
            self._armed = False
            raise ScorerTimedOut
        self._rearm(None)

    # --- the watchdog -------------------------------------------------------------------

    def _watched(self, fn: Callable[..., Any], kwargs: dict[str, Any], timeout: float) -> Any:
        token, thread_id = object(), threading.get_ident()
        due = time.monotonic() + timeout
        with self._cond:
            if self._watchdog is None:
                self._watchdog = threading.Thread(target=self._watch, name="scorer-watchdog", daemon=True)
                self._watchdog.start()
            self._pending[token] = (due, thread_id)
            if due < self._next_due:
                self._next_due = due
                self._cond.notify()
        fired = False
        try:
            result = fn(**kwargs)
        finally:
            with self._cond:
                fired = self._pending.pop(token, None) is None
            if fired:
                _raise_in(thread_id, None)
        if fired:  # finished, but past its deadline and after the watchdog fired
            raise ScorerTimedOut
        return result

    def _watch(self) -> None:
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                for token, (due, thread_id) in list(self._pending.items()):
                    if due <= now:
                        del self._pending[token]
                        _raise_in(thread_id, ScorerTimedOut)
                self._next_due = min((due for due, _ in self._pending.values()), default=float("inf"))
                self._cond.wait(None if self._next_due == float("inf") else self._next_due - now)
