"""The component manager: custom nodes and models a machine installs from a manifest.

The machine agent runs them as its "custom nodes" and "models" startup steps through
:class:`ComponentStep` (which calls :meth:`ComponentManager.install_nodes` and
:meth:`ComponentManager.install_models`); ``emp components install`` runs both from the
command line.
"""

from emp_queue.machine.components.errors import (
    ChecksumMismatchError,
    ComponentError,
    ComponentInstallError,
    DownloadError,
    GitError,
    InsufficientDiskError,
    ManifestError,
    MissingVariableError,
    RequirementsError,
)
from emp_queue.machine.components.manager import (
    ComponentKind,
    ComponentManager,
    ComponentOutcome,
    InstallReport,
    OutcomeStatus,
)
from emp_queue.machine.components.manifest import Manifest, ModelSpec, NodeSpec, load_manifest
from emp_queue.machine.components.progress import ProgressCallback
from emp_queue.machine.components.settings import ComponentSettings
from emp_queue.machine.components.steps import ComponentStep, StepProgress

__all__ = [
    "ChecksumMismatchError",
    "ComponentError",
    "ComponentInstallError",
    "ComponentKind",
    "ComponentManager",
    "ComponentOutcome",
    "ComponentSettings",
    "ComponentStep",
    "DownloadError",
    "GitError",
    "InstallReport",
    "InsufficientDiskError",
    "Manifest",
    "ManifestError",
    "MissingVariableError",
    "ModelSpec",
    "NodeSpec",
    "OutcomeStatus",
    "ProgressCallback",
    "RequirementsError",
    "StepProgress",
    "load_manifest",
]
