"""Errors a user can cause and fix. The CLI prints them as one line and exits non-zero.

Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


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
