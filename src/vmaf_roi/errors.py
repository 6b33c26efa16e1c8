"""Errors a user can cause and fix. The CLI prints them as one line and exits non-zero.

Anything else is a bug and keeps its traceback.

Exit status by category (documented in README, *Exit status*):

====  =====================================================================
0     success
1     some batch jobs failed (the others ran)
2     usage: a bad option, configuration key or value (:class:`ConfigError`)
3     a missing, unreadable or unsupported input file (:class:`InputError`)
4     an unknown, missing or tampered model (:class:`ModelError`)
5     a requested device that is not available (:class:`DeviceError`)
6     the encoder failed or rejected its options (:class:`EncodeError`)
7     scoring failed: ffmpeg/libvmaf (``vmaf.VmafError``)
8     an output refused: it exists (no ``-y``), it is an input, or its
      directory is missing or not writable (:class:`OutputError`)
128+N interrupted by signal N: 130 Ctrl-C (SIGINT), 129 SIGHUP, 143 SIGTERM
====  =====================================================================
"""

from __future__ import annotations

import signal


class VmafRoiError(Exception):
    """Base class: a problem with the user's input, configuration or environment."""

    exit_code = 1


class InputError(VmafRoiError):
    """A missing, unreadable or unsupported input file."""

    exit_code = 3


class ConfigError(VmafRoiError):
    """A bad option, configuration key or value."""

    exit_code = 2


class ModelError(VmafRoiError):
    """An unknown, missing or tampered model, or a model that does not fit its contract."""

    exit_code = 4


class DeviceError(VmafRoiError):
    """A requested device (CUDA, NVENC, ...) that is not available here."""

    exit_code = 5


class EncodeError(VmafRoiError):
    """An encoder that failed to open or rejected its options."""

    exit_code = 6


class OutputError(VmafRoiError):
    """An output that must not be written: it exists (and no -y), it is one of the inputs,
    or its directory is missing or not writable."""

    exit_code = 8


_pending: list[int] = []
_on_interrupt: list = []  # callables run by interrupt() before it raises (e.g. kill a child)


def interrupt(signum: int):
    """Raise :class:`Interrupted` for a signal, and remember it: an exception raised inside an
    FFmpeg I/O callback (PyAV's pyio write) is swallowed there and only an I/O error comes out,
    so the code that catches that error calls :func:`raise_pending` to re-raise the signal.
    The callables in ``_on_interrupt`` run first: a child that stops reading its stdin (libvmaf)
    is killed, so a write blocked on its full pipe fails instead of waiting forever."""
    _pending.append(signum)
    for fn in list(_on_interrupt):
        try:
            fn()
        except Exception:  # noqa: BLE001 - best effort; the exception below is what matters
            pass
    if _deferred:
        return  # inside code that FFmpeg may call back into: raise_pending() raises it after
    raise Interrupted(signum)


_deferred: list[bool] = []


class defer_interrupts:
    """Within it a signal is only recorded (and the children killed): for calls into FFmpeg that
    may run Python callbacks (PyAV's I/O), where an exception would be swallowed and printed.
    The code after it calls :func:`raise_pending`."""

    def __enter__(self) -> None:
        _deferred.append(True)

    def __exit__(self, *exc) -> None:
        _deferred.pop()


def quiet_unraisable(args) -> None:
    """``sys.unraisablehook``: a signal's exception that a C callback had to swallow (the
    interpreter reports it as "Exception ignored in ...") is re-raised by raise_pending(), so it
    is not printed as a traceback; anything else goes to the default hook."""
    import sys

    if isinstance(args.exc_value, KeyboardInterrupt):  # Interrupted is one
        return
    sys.__unraisablehook__(args)


def raise_pending() -> None:
    """Re-raise a signal that :func:`interrupt` raised but somebody swallowed."""
    if _pending:
        signum = _pending[-1]
        _pending.clear()  # once: cleanup code that runs afterwards must not meet it again
        raise Interrupted(signum)


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread like Ctrl-C's KeyboardInterrupt, so every
    ``finally`` and context manager (temporary files, child processes) cleans up the same way."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def name(self) -> str:
        try:
            return signal.Signals(self.signum).name
        except ValueError:
            return f"signal {self.signum}"


def exit_code_for_interrupt(exc: BaseException) -> int:
    """128 + the signal number, as shells report it (130 for Ctrl-C)."""
    return exc.exit_code if isinstance(exc, Interrupted) else 128 + signal.SIGINT


def short(value: object, limit: int = 60) -> str:
    """repr() of a value for an error message, cut to ``limit`` characters."""
    try:
        r = repr(value) if not isinstance(value, (list, dict, tuple, set)) else _shallow(value, limit)
    except RecursionError:  # pragma: no cover - a self-referencing structure
        r = f"<{type(value).__name__}>"
    return r if len(r) <= limit else r[: limit - 3] + "..."


def _shallow(value, limit: int) -> str:
    """repr of a container that stops once it is long enough (an alias bomb never expands)."""
    out: list[str] = []
    n = 0
    brackets = {"list": "[]", "tuple": "()", "dict": "{}", "set": "{}"}.get(type(value).__name__, "[]")
    items = value.items() if isinstance(value, dict) else value
    for it in items:
        if isinstance(value, dict):
            k, v = it
            s = f"{short(k, limit)}: {short(v, limit)}"
        else:
            s = short(it, limit)
        out.append(s)
        n += len(s) + 2
        if n > limit:
            out.append("...")
            break
    return brackets[0] + ", ".join(out) + brackets[1]
