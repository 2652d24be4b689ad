"""Runs a Keras program (Keras 3, or tf.keras of TF 2.x) on tensorgrid with only its import lines changed.

    python examples/keras/run.py PROGRAM.py [--set epochs=1 ...] [--replace "60000=>1500" ...]

Import lines become tensorgrid's: `import tensorflow as tf` -> `import tensorgrid as tf`,
`import keras` / `from tensorflow import keras` -> `from tensorgrid import keras`, and (keras_core,
Keras 3's preview name, alike)
`from keras.X import Y` / `from tensorflow.keras.X import Y` -> `from tensorgrid.client.keras.X import Y`.
`keras.datasets` (mnist, imdb: downloads in Keras) is this folder's local `datasets.py`, built from
scikit-learn's digits. `--set NAME=VALUE` replaces a top-level assignment (an epoch count), `--replace
OLD=>NEW` a text where it stands; the lines changed are printed first (examples/tf1/run.py's rules).
"""

import importlib.util
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def _load_tf1_runner():
    """examples/tf1/run.py, whose --set / --replace handling and execution this runner shares."""
    spec = importlib.util.spec_from_file_location("tf1_run", os.path.join(HERE, "..", "tf1", "run.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_tf1_run = _load_tf1_runner()

_KERAS = "tensorgrid.client.keras"
_IMPORTS = [
    (re.compile(r"^(\s*)import tensorflow as tf\s*(#.*)?$"), r"\1import tensorgrid as tf"),
    (re.compile(r"^(\s*)import tensorflow\.compat\.v2 as tf\s*(#.*)?$"), r"\1import tensorgrid as tf"),
    (re.compile(r"^(\s*)(?:from tensorflow )?import keras(?:_core)?(?: as keras)?\s*(#.*)?$"),
     r"\1from tensorgrid import keras"),
    (re.compile(r"^(\s*)from (?:tensorflow\.)?keras(?:_core)?\.datasets import (.*)$"), r"\1from datasets import \2"),
    (re.compile(r"^(\s*)from (?:tensorflow\.)?keras(?:_core)?\.(\w+(?:\.\w+)*) import (.*)$"),
     rf"\1from {_KERAS}.\2 import \3"),
    (re.compile(r"^(\s*)from (?:tensorflow\.)?keras(?:_core)? import (.*)$"), rf"\1from {_KERAS} import \2"),
]


def rewrite(source, settings=(), replacements=()):
    """(new source, [(line, old, new)]): the imports made tensorgrid's, then the TF1 runner's --set / --replace."""
    lines, changed = source.splitlines(), []
    for i, line in enumerate(lines):
        for pattern, replacement in _IMPORTS:
            if pattern.match(line):
                new = pattern.sub(replacement, line)
                if new != line:
                    changed.append((i + 1, line, new))
                    lines[i] = new
                break
    source, more = _tf1_run.rewrite("\n".join(lines) + "\n", settings, replacements)
    return source, sorted(changed + more)


def main(argv=None):
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("program")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--replace", action="append", default=[], metavar="OLD=>NEW")
    args = parser.parse_args(argv)
    with open(args.program, encoding="utf-8") as f:
        source, changed = rewrite(f.read(), [s.split("=", 1) for s in args.set],
                                  [r.split("=>", 1) for r in args.replace])
    for number, old, new in changed:
        print(f"{os.path.basename(args.program)}:{number}: {old.strip()}  ->  {new.strip()}")
    sys.path[:0] = [HERE, os.path.dirname(os.path.abspath(args.program))]
    import datasets
    import tensorgrid
    tensorgrid.keras.datasets = datasets    # keras.datasets.mnist.load_data() reads the local digits too
    _tf1_run.execute(args.program, source)


if __name__ == "__main__":
    main()
