"""Import paths from before the package was laid out by step (0.1: 31 flat modules).

`import tl_keras.hub`, `from tl_keras.features import compute_features`, `tl_keras.advisor.advise`
keep working: each old module name is an alias of the module that now holds its code (the same
module object, so patching `tl_keras.hub.X` patches the real one). Old names of modules that became
packages (`tl_keras.data`, `tl_keras.training`, `tl_keras.export`, `tl_keras.serving`,
`tl_keras.evaluation`, `tl_keras.cli`) are handed out by those packages themselves.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

MOVED = {
    "tl_keras.advisor": "tl_keras.tuning.advisor",
    "tl_keras.augment": "tl_keras.data.augment",
    "tl_keras.backbones": "tl_keras.models.backbones.applications",
    "tl_keras.batches": "tl_keras.utils.batches",
    "tl_keras.checkpoint": "tl_keras.training.checkpoint",
    "tl_keras.checks": "tl_keras.utils.checks",
    "tl_keras.classifier": "tl_keras.models.classifier",
    "tl_keras.embed": "tl_keras.serving.embed",
    "tl_keras.features": "tl_keras.training.caches",
    "tl_keras.files": "tl_keras.utils.files",
    "tl_keras.hub": "tl_keras.models.backbones.hub",
    "tl_keras.label_files": "tl_keras.data.label_files",
    "tl_keras.lr_finder": "tl_keras.tuning.lr_finder",
    "tl_keras.onnx_export": "tl_keras.export.onnx",
    "tl_keras.plots": "tl_keras.evaluation.plots",
    "tl_keras.registry": "tl_keras.models.registry",
    "tl_keras.server": "tl_keras.serving.server",
    "tl_keras.tfdata": "tl_keras.data.tfdata",
    "tl_keras.tflite": "tl_keras.export.tflite",
    "tl_keras.tta": "tl_keras.evaluation.tta",
}


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old module name and loads it as the module that holds its code now."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        module = importlib.import_module(MOVED[spec.name])
        self._own_spec = module.__spec__
        return module

    def exec_module(self, module) -> None:
        # The import system set `__spec__` to the alias's; the module keeps its own.
        module.__spec__ = self._own_spec


def install() -> None:
    """Makes the old names importable (once per process)."""
    if not any(isinstance(finder, _Alias) for finder in sys.meta_path):
        sys.meta_path.append(_Alias())
