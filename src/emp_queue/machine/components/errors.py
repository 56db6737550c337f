"""Errors of the component manager, all under :class:`emp_queue.errors.EmpError`.

Each message names the component (node or model) and says what to change, because these
errors surface in a machine's startup events where an operator reads them without context.
"""

from __future__ import annotations

from emp_queue.errors import ConfigurationError, EmpError


class ComponentError(EmpError):
    """A custom node or model could not be installed; the message names it and the cause."""


class ManifestError(ConfigurationError):
    """The manifest cannot be read or is malformed; fix the file (or URL) the message names."""


class MissingVariableError(ComponentError):
    """A node's ``.env`` template uses ``${VAR}`` but VAR is not set in the machine's environment.

    Set the variable for the machine (or remove it from the node's ``env`` in the manifest).
    """

    def __init__(self, node: str, key: str, variable: str) -> None:
        self.node = node
        self.key = key
        self.variable = variable
        super().__init__(
            f"custom node {node!r}: env {key} uses ${{{variable}}} but {variable} is not set; "
            f"set {variable} in the machine's environment or remove it from the manifest"
        )


class GitError(ComponentError):
    """A git command failed; the message holds the command and git's own error output."""


class RequirementsError(ComponentError):
    """``pip install -r requirements.txt`` of a custom node failed; pip's output is attached."""


class DownloadError(ComponentError):
    """A model download failed (HTTP error, dropped connection, size mismatch).

    The partial file is kept when it can be resumed: the next run continues where this one
    stopped.
    """


class ChecksumMismatchError(DownloadError):
    """The downloaded bytes do not hash to the manifest's SHA-256; the partial file is deleted.

    Either the manifest's hash is wrong or the URL serves another file; fix one of them.
    """

    def __init__(self, model: str, url: str, expected: str, actual: str) -> None:
        self.model = model
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"model {model!r}: SHA-256 mismatch for {url}: expected {expected}, got {actual}; "
            "the download was deleted — fix the manifest's sha256 or the URL"
        )


class InsufficientDiskError(ComponentError):
    """Not enough free disk for the models to download, keeping the configured reserve.

    Free space, use a bigger disk, or lower ``EMP_COMPONENTS_DISK_RESERVE_GB``.
    """


class ComponentInstallError(ComponentError):
    """One or more components failed to install; the message lists each with its cause."""
