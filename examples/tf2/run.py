"""Runs a TF2 program (a .py file or a Jupyter notebook's code cells) on tensorgrid, imports changed only.

    python examples/tf2/run.py PROGRAM.py|PROGRAM.ipynb [--target grpc://host:port] [--set training_steps=20 ...]
                               [--replace "range(20000)=>range(30)" ...] [--tensorflow]

`import tensorflow as tf` becomes `import tensorgrid as tf`, `from tensorflow import X` takes X from
tensorgrid and `from tensorflow.X import Y` from tensorgrid.client.X (tf.keras's package), and Keras's MNIST and
CIFAR-10 loaders (`from tensorflow.keras.datasets import mnist` / `cifar10`) become this folder's local `mnist` /
`cifar10`, data of their shapes made from scikit-learn's digits (no download). A notebook runs as one script of
its code cells, in order, IPython lines (`%matplotlib`,
`!pip`) left out. `--set` / `--replace` shorten a run as in examples/tf1/run.py; `--target` is the
cluster every Session (and tg.function-free graph code) runs on, as TENSORGRID_MASTER; `--tensorflow`
runs the same program on TensorFlow itself (only the dataset imports changed), for comparison. The lines
changed are printed first.
"""

import argparse
import importlib.util
import json
import os
import re
import runpy
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def _tf1_run():
    spec = importlib.util.spec_from_file_location("tf1_run", os.path.join(os.path.dirname(HERE), "tf1", "run.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_DATASETS = [(re.compile(rf"^(\s*)from tensorflow(?:\.python)?\.keras\.datasets import {name}\s*(#.*)?$"),
              rf"\1import {name}") for name in ("mnist", "cifar10")]
_IMPORTS = [
    *_DATASETS,
    (re.compile(r"^(\s*)import tensorflow as tf\s*(#.*)?$"), r"\1import tensorgrid as tf"),
    (re.compile(r"^(\s*)import tensorflow\s*(#.*)?$"), r"\1import tensorgrid as tensorflow"),
    (re.compile(r"^(\s*)from tensorflow import (.*)$"), r"\1from tensorgrid import \2"),
    # tf.keras, tf.data, ... are tensorgrid.client's packages (tg.keras is an attribute, not a module)
    (re.compile(r"^(\s*)from tensorflow\.([\w.]+) import (.*)$"), r"\1from tensorgrid.client.\2 import \3"),
    (re.compile(r"^(\s*)import tensorflow\.([\w.]+) as (\w+)\s*(#.*)?$"), r"\1import tensorgrid.client.\2 as \3"),
]


def notebook_source(text):
    """The code cells of a notebook (its JSON text) as one script, IPython magics and shell lines dropped."""
    cells = json.loads(text)["cells"]
    chunks = []
    for cell in cells:
        if cell.get("cell_type") != "code":
            continue
        source = cell["source"]
        lines = ("".join(source) if isinstance(source, list) else source).splitlines()
        chunks.append("\n".join(line for line in lines if not line.lstrip().startswith(("%", "!"))))
    return "\n\n".join(chunks) + "\n"


def rewrite(source, settings=(), replacements=(), tensorflow=False):
    """(new source, [(line number, old, new)]): the TF2 imports (only the dataset ones with tensorflow=True),
    `--set` assignments and `--replace` texts changed."""
    return _tf1_run().rewrite(source, settings, replacements, imports=_DATASETS if tensorflow else _IMPORTS)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("program")
    parser.add_argument("--target", default=None, help="a cluster's grpc://host:port (default: in-process)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--replace", action="append", default=[], metavar="OLD=>NEW")
    parser.add_argument("--tensorflow", action="store_true", help="run on TensorFlow instead, for comparison")
    args = parser.parse_args(argv)
    with open(args.program, encoding="utf-8") as f:
        text = f.read()
    if args.program.endswith(".ipynb"):
        text = notebook_source(text)
    source, changed = rewrite(text, [s.split("=", 1) for s in args.set], [r.split("=>", 1) for r in args.replace],
                              args.tensorflow)
    for number, old, new in changed:
        print(f"{os.path.basename(args.program)}:{number}: {old.strip()}  ->  {new.strip()}")
    if args.target:
        os.environ["TENSORGRID_MASTER"] = args.target
    sys.path[:0] = [HERE, os.path.dirname(os.path.abspath(args.program))]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, os.path.splitext(os.path.basename(args.program))[0] + ".py")
        with open(path, "w", encoding="utf-8") as f:
            f.write(source)
        os.chdir(tmp)
        sys.argv = [path]
        runpy.run_path(path, run_name="__main__")


if __name__ == "__main__":
    main()
