"""Errors users can act on.

Every failure caused by user input (files, configs, names) raises a subclass of
``MimicError`` with a message saying what is wrong and how to fix it. The CLI
prints these without a traceback.
"""


class MimicError(Exception):
    """Base class for user-facing errors."""


class ClipError(MimicError):
    """A reference clip file is missing, unreadable or inconsistent."""


class BindingError(MimicError):
    """Clip joints/bodies do not match the body model by name."""


class ConfigError(MimicError):
    """An experiment configuration is invalid."""


class BodyError(MimicError):
    """An unknown body or a body model that cannot be built."""


class RunDirError(MimicError):
    """A run directory is missing, incomplete or belongs to another experiment."""


class KeypointError(MimicError):
    """A keypoint (pose tracking) file is missing, unreadable or implausible."""


class BackendError(MimicError):
    """A physics backend is unknown, not installed, or cannot simulate this body."""


class OutputError(MimicError, OSError):
    """An output file could not be written (disk full, quota, read-only); the previous file is kept.

    Also an OSError, so code that already handled a failed write still does.
    """
