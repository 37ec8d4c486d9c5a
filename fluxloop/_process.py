"""The one fork/exit registry of the process: after-fork callbacks (held weakly) and exit callbacks.

Everything in FluxLoop that owns a thread, a lock or a socket registers here instead of calling
``os.register_at_fork`` / ``atexit`` itself. The registry installs each OS-level hook once, on the first
registration (never at import), and only where the platform has it (``os.register_at_fork`` is POSIX-only).
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import MethodType

from fluxloop._errors import internal_error

_Ref = Callable[[], Callable[[], object] | None]


def _weak(callback: Callable[[], object]) -> _Ref:
    """A bound method is held weakly (its owner may go away); a plain function strongly."""
    if isinstance(callback, MethodType):
        return weakref.WeakMethod(callback)
    return lambda: callback


class ProcessHooks:
    """After-fork-in-child and at-exit callbacks, each OS hook installed at most once per process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_child: list[_Ref] = []
        self._at_exit: list[_Ref] = []
        self._in_mp_child: list[_Ref] = []
        self._mp_hook_installed = False
        self._fork_hook_installed = False
        self._exit_hook_installed = False
        self._sigterm_deferring = 0  # depth of deferring_sigterm() blocks on the main thread
        self._sigterm_pending = False  # a SIGTERM arrived inside one: die when the outermost ends

    def after_fork_in_child(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` in a forked child (before any other code there); a bound method is held weakly."""
        with self._lock:
            self._in_child = [ref for ref in self._in_child if ref() is not None]
            self._in_child.append(_weak(callback))
            if not self._fork_hook_installed and hasattr(os, "register_at_fork"):
                os.register_at_fork(after_in_child=self._run_in_child)
                self._fork_hook_installed = True

    def at_exit(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` at interpreter exit (last registered, first run); a bound method is held weakly."""
        with self._lock:
            self._at_exit.append(_weak(callback))
            if not self._exit_hook_installed:
                atexit.register(self._run_at_exit)
                self._exit_hook_installed = True

    def in_multiprocessing_child(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` in a ``multiprocessing`` child after it cleared the finalizers inherited at fork."""
        import multiprocessing.util  # first use, not import: multiprocessing (and pickle) cost ~7 ms to load

        with self._lock:
            self._in_mp_child.append(_weak(callback))
            if not self._mp_hook_installed:
                multiprocessing.util.register_after_fork(self, ProcessHooks._run_in_mp_child)
                self._mp_hook_installed = True

    @staticmethod
    def at_multiprocessing_exit(callback: Callable[[], object]) -> None:
        """Run ``callback`` when this ``multiprocessing`` child ends (it skips ``atexit``: it ends with _exit)."""
        import multiprocessing.util  # already loaded: this runs in a multiprocessing child

        multiprocessing.util.Finalize(None, callback, exitpriority=0)

    @staticmethod
    def in_multiprocessing_child_now() -> bool:
        """Whether this process is a ``multiprocessing`` child (any start method), without importing it."""
        multiprocessing = sys.modules.get("multiprocessing")
        return multiprocessing is not None and multiprocessing.parent_process() is not None

    def flush_on_sigterm(self, callback: Callable[[], object]) -> bool:
        """In a ``multiprocessing`` child whose SIGTERM the app left at its default: run ``callback`` first, then die
        of SIGTERM as before (``Pool.__exit__`` and ``terminate()`` end workers so). True when installed.

        Only from the main thread, and never over a handler the application installed. A SIGTERM that interrupts a
        :meth:`deferring_sigterm` block (a shutdown already flushing) lets it finish first, then dies.
        """
        if not hasattr(signal, "SIGTERM") or threading.current_thread() is not threading.main_thread():
            return False
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return False

        def flush_then_die(signum: int, frame: object) -> None:
            if self._sigterm_deferring:
                # The main thread was interrupted inside a shutdown (an exit hook's, a finalizer's or the app's): a
                # nested one would find it under way and return at once, and dying now would cut its flush short.
                self._sigterm_pending = True
                return
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            try:
                callback()
            except Exception as exc:  # the worker dies either way
                internal_error("flush on SIGTERM", exc, reraise=False)
            finally:
                os.kill(os.getpid(), signal.SIGTERM)

        signal.signal(signal.SIGTERM, flush_then_die)
        return True

    @contextmanager
    def deferring_sigterm(self) -> Iterator[None]:
        """A block the SIGTERM handler of :meth:`flush_on_sigterm` must not cut short (a shutdown that flushes): a
        SIGTERM arriving inside it waits until the block ends, then ends the process as it would have.

        Counted on the main thread only, where signal handlers run: no lock, which a handler could never take.
        """
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        self._sigterm_deferring += 1
        try:
            yield
        finally:
            self._sigterm_deferring -= 1
            if not self._sigterm_deferring and self._sigterm_pending:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                os.kill(os.getpid(), signal.SIGTERM)

    @property
    def fork_hook_installed(self) -> bool:
        return self._fork_hook_installed

    def _run_in_child(self) -> None:
        # Another parent thread may have held the lock at fork time: the child starts with a fresh one.
        self._lock = threading.Lock()
        for ref in list(self._in_child):
            self._call(ref, "after fork")

    def _run_in_mp_child(self) -> None:
        for ref in list(self._in_mp_child):
            self._call(ref, "in multiprocessing child")

    def _run_at_exit(self) -> None:
        for ref in reversed(list(self._at_exit)):
            self._call(ref, "at exit")

    @staticmethod
    def _call(ref: _Ref, where: str) -> None:
        callback = ref()
        if callback is None:
            return
        try:
            callback()
        except Exception as exc:  # one failing hook never stops the others
            internal_error(f"process hook {where}", exc, reraise=False)


#: The registry. Importing this module registers nothing with the OS.
HOOKS = ProcessHooks()
