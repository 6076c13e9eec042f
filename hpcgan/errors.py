"""The error types of hpcgan.

``HpcganError`` is what a user can cause and fix (a bad path, a corrupt image, an
invalid config, a missing build). Its message says what went wrong and what to
do; the CLI prints it without a traceback and exits non-zero.
"""


class HpcganError(Exception):
    """An error the user can fix; the message says how."""


class NativeExtensionError(HpcganError, RuntimeError):
    """The native extension hpcgan._C is missing or lacks a requested backend."""
