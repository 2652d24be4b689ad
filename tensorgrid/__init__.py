"""tensorgrid: a distributed dataflow-graph runtime with a TensorFlow-style API.

`import tensorgrid as tg` gives the TF2-style top level (eager by default,
`tg.function`); `tensorgrid.compat.v1` gives TF1 graph mode.
"""

import os as _os

# Running from a source checkout: client/, runtime/, worker/ and proto/ sit beside
# this folder and install as tensorgrid.client etc.; make them importable the same way.
_root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if _os.path.isfile(_os.path.join(_root, "pyproject.toml")) and _os.path.isdir(_os.path.join(_root, "client")):
    __path__.append(_root)  # noqa: F821 - the package's own __path__

from tensorgrid import ops as _ops  # noqa: E402,F401 - registers every op
from tensorgrid.api import *  # noqa: E402,F401,F403
from tensorgrid.api import __all__  # noqa: E402,F401

__version__ = "0.1.0"

from tensorgrid import compat  # noqa: E402,F401 - tg.compat.v1
from tensorgrid import _aliases  # noqa: E402

_aliases.install()  # tensorgrid.keras names tensorgrid.client.keras
