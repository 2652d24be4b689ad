"""`tensorgrid.keras` (and its submodules) as names of `tensorgrid.client.keras`, the one copy of the code.

So `from tensorgrid.keras import layers` and `import tensorgrid.keras as keras`
work as `from tensorflow.keras import layers` does, and every name gives the
very same module object (one Dense class, not two).
"""

import importlib
import importlib.abc
import importlib.util
import sys

_ALIASES = {"tensorgrid.keras": "tensorgrid.client.keras"}


class _AliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        for alias in _ALIASES:
            if fullname == alias or fullname.startswith(alias + "."):
                return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        for alias, real in _ALIASES.items():
            if spec.name == alias or spec.name.startswith(alias + "."):
                return importlib.import_module(real + spec.name[len(alias):])
        raise ImportError(spec.name)

    def exec_module(self, module):
        """The real module ran when it was imported under its own name."""


def install():
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _AliasFinder())
