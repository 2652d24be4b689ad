"""Runs a TF1 program on tensorgrid with only its import lines changed.

    python examples/tf1/run.py PROGRAM.py [--target grpc://host:port] [--set num_steps=20 ...]
                               [--replace "range(20000)=>range(30)" ...]

The TensorFlow import (`import tensorflow as tf`, or its compat.v1 form)
becomes `import tensorgrid.compat.v1 as tf; tf.disable_v2_behavior()`, and
TF1's MNIST loader import (`from tensorflow.examples.tutorials.mnist import
input_data`) becomes this folder's local `input_data`. `--set NAME=VALUE`
replaces the value of a top-level assignment `NAME = ...` (a step count or an
epoch count, to keep a run short), `--replace OLD=>NEW` replaces the text
OLD where it stands (a step count written inline); `--target` runs every session on that
cluster (as TENSORGRID_MASTER). The lines changed are printed first.
"""

import argparse
import os
import re
import runpy
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))

_IMPORTS = [
    (re.compile(r"^(\s*)import tensorflow(?:\.compat\.v1)? as tf\s*(#.*)?$"),
     r"\1import tensorgrid.compat.v1 as tf; tf.disable_v2_behavior()"),
    (re.compile(r"^(\s*)from tensorflow\.compat import v1 as tf\s*(#.*)?$"),
     r"\1import tensorgrid.compat.v1 as tf; tf.disable_v2_behavior()"),
    (re.compile(r"^(\s*)from tensorflow\.examples\.tutorials\.mnist import input_data\s*(#.*)?$"),
     r"\1import input_data"),
]


def rewrite(source, settings=(), replacements=(), imports=_IMPORTS):
    """(new source, [(line number, old, new)]) with the imports, `--set` assignments and `--replace` texts changed.

    `imports`: (compiled pattern, replacement) pairs; the first that matches a line rewrites it."""
    lines, changed = source.splitlines(), []
    wanted = dict(settings)
    for i, line in enumerate(lines):
        new = line
        for pattern, replacement in imports:
            if pattern.match(line):
                new = pattern.sub(replacement, line)
                break
        m = re.match(r"^([A-Za-z_]\w*)\s*=\s*[^=].*$", line)
        if m and m.group(1) in wanted:
            new = f"{m.group(1)} = {wanted[m.group(1)]}"
        for old_text, new_text in replacements:
            new = new.replace(old_text, new_text)
        if new != line:
            changed.append((i + 1, line, new))
            lines[i] = new
    return "\n".join(lines) + "\n", changed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("program")
    parser.add_argument("--target", default=None, help="a cluster's grpc://host:port (default: in-process)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--replace", action="append", default=[], metavar="OLD=>NEW")
    args = parser.parse_args(argv)
    settings = [s.split("=", 1) for s in args.set]
    replacements = [r.split("=>", 1) for r in args.replace]
    with open(args.program, encoding="utf-8") as f:
        source, changed = rewrite(f.read(), settings, replacements)
    for number, old, new in changed:
        print(f"{os.path.basename(args.program)}:{number}: {old.strip()}  ->  {new.strip()}")
    if args.target:
        os.environ["TENSORGRID_MASTER"] = args.target
    sys.path[:0] = [HERE, os.path.dirname(os.path.abspath(args.program))]
    execute(args.program, source)


def execute(program, source):
    """Runs `source` as the program `program` would run, from a scratch folder it may write files into."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, os.path.basename(program))
        with open(path, "w", encoding="utf-8") as f:
            f.write(source)
        os.chdir(tmp)
        sys.argv = [path]
        runpy.run_path(path, run_name="__main__")


if __name__ == "__main__":
    main()
