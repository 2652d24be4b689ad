"""model.summary(): the table Keras 3 prints, drawn the way its `rich` table lays it out.

Column widths: Keras's positions of the line length (88 for a sequential
model, 108 with the "Connected to" column, at most the terminal's width
minus 4); each column is its width plus one space either side, and when
they and the borders overrun the line they are cut evenly, as rich cuts
fixed-width columns. Cells wrap at spaces (a word longer than the cell is
cut), "Param #" is right-aligned, rows are separated by rules.
"""

import math
import re
import shutil

import numpy as np

from tensorgrid.framework import dtypes

__all__ = ["print_summary", "count_params"]


def count_params(weights):
    return int(sum(math.prod(w.shape.as_tuple()) for w in {id(w): w for w in weights}.values()))


def _memory(weights):
    return sum(math.prod(w.shape.as_tuple()) * np.dtype(dtypes.as_dtype(w.dtype).as_numpy_dtype).itemsize
               for w in {id(w): w for w in weights}.values())


def readable_memory_size(size):
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size / 1024 < 1:
            return f"{size:.2f} {unit}"
        size /= 1024
    return f"{size:.2f} PB"


def _format_shape(shape):
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def _output_shape(layer):
    nodes = layer._inbound_nodes
    if nodes:
        outputs = nodes[-1].output_tensors
        texts = [_format_shape(t.shape) for t in outputs]
        return texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    if layer._build_shapes is None:
        return "?"
    try:
        shapes = layer.compute_output_shape(layer._build_shapes)
    except Exception:  # noqa: BLE001 - a layer whose shape cannot be traced shows '?', as Keras's NotImplementedError
        return "?"
    if isinstance(shapes, tuple) and all(d is None or isinstance(d, int) for d in shapes):
        return _format_shape(shapes)
    return "[" + ", ".join(_format_shape(s) for s in shapes) + "]"


def _sequential_like(model):
    from tensorgrid.client.keras.models.functional import Functional
    if not isinstance(model, Functional):
        return True
    for nodes in model._nodes_by_depth.values():
        if len(nodes) > 1 or (len(nodes) == 1 and len(nodes[0].input_tensors) > 1):
            return False
    node_ids = {id(n) for n in model._nodes}
    for layer in model.layers:
        if sum(1 for n in layer._inbound_nodes if id(n) in node_ids) > 1:
            return False
    return True


def _wrap(text, width):
    """Lines of `text` at most `width` wide: words kept whole where they fit, longer ones cut."""
    lines = []
    for paragraph in text.split("\n"):
        line = ""
        for word in re.findall(r"\S+\s*", paragraph) or [""]:
            bare = word.rstrip()
            if len(line) + len(bare) <= width:
                line += word
                continue
            if line.strip():
                lines.append(line.rstrip())
            while len(bare) > width:
                lines.append(bare[:width])
                bare = bare[width:]
            line = bare + word[len(word.rstrip()):] if bare else ""
        lines.append(line.rstrip())
    return lines


def _column_widths(line_length, positions):
    widths, current = [], 0
    for pos in positions:
        width = int(pos * line_length) - current
        if width < 4:
            raise ValueError("Insufficient console width to print summary.")
        widths.append(width)
        current += width
    # rich: each column is its width plus padding; the borders take n + 1 more; overruns are cut evenly
    cells = [w + 2 for w in widths]
    excess = sum(cells) - (line_length - len(cells) - 1)
    if excess > 0:
        remaining, ratio = excess, len(cells)
        for i in range(len(cells)):
            cut = min(cells[i], round(remaining / ratio))
            cells[i] -= cut
            remaining -= cut
            ratio -= 1
    return cells


def _render(header, rows, cells, alignment):
    def line(left, fill, mid, right):
        return left + mid.join(fill * w for w in cells) + right

    def row_lines(fields, vertical):
        wrapped = [_wrap(str(f), w - 2) for f, w in zip(fields, cells)]
        height = max(len(w) for w in wrapped)
        out = []
        for i in range(height):
            parts = []
            for lines, w, align in zip(wrapped, cells, alignment):
                text = lines[i] if i < len(lines) else ""
                parts.append(" " + (text.rjust(w - 2) if align == "right" else
                                    text.center(w - 2) if align == "center" else text.ljust(w - 2)) + " ")
            out.append(vertical + vertical.join(parts) + vertical)
        return out
    out = [line("┏", "━", "┳", "┓")]
    out += row_lines(header, "┃")
    out.append(line("┡", "━", "╇", "┩"))
    for i, fields in enumerate(rows):
        if i:
            out.append(line("├", "─", "┼", "┤"))
        out += row_lines(fields, "│")
    out.append(line("└", "─", "┴", "┘"))
    return out


def print_summary(model, line_length=None, positions=None, print_fn=None, expand_nested=False, show_trainable=False,
                  layer_range=None):
    from tensorgrid.client.keras.models.functional import Functional
    sequential_like = _sequential_like(model)
    if sequential_like:
        default_length, positions = 88, positions or [0.45, 0.80, 1.0]
        header = ["Layer (type)", "Output Shape", "Param #"]
        alignment = ["left", "left", "right"]
    else:
        default_length, positions = 108, positions or [0.3, 0.56, 0.74, 1.0]
        header = ["Layer (type)", "Output Shape", "Param #", "Connected to"]
        alignment = ["left", "left", "right", "left"]
    if show_trainable:
        default_length += 12
        positions = [p * 0.90 for p in positions] + [1.0]
        header.append("Trainable")
        alignment.append("center")
    line_length = line_length or min(default_length, shutil.get_terminal_size().columns - 4)
    cells = _column_widths(line_length, positions)
    relevant = {id(n) for n in model._nodes} if isinstance(model, Functional) else None

    def connections(layer):
        parts = []
        for node in layer._inbound_nodes:
            if relevant is not None and id(node) not in relevant:
                continue
            for t in node.input_tensors:
                inbound, node_index, tensor_index = t._keras_history
                parts.append(f"{inbound.name}[{node_index}][{tensor_index}]")
        return ", ".join(parts) or "-"

    def fields(layer, prefix=""):
        params = f"{layer.count_params():,}" if layer.built else "0 (unbuilt)"
        row = [f"{prefix}{layer.name} ({type(layer).__name__})", _output_shape(layer), params]
        if not sequential_like:
            row.append(connections(layer))
        if show_trainable:
            row.append(("Y" if layer.trainable else "N") if layer.weights else "-")
        return row

    def rows_of(layer, level=0):
        rows = [fields(layer, "   " * level + "└ " if level else "")]
        if expand_nested and getattr(layer, "layers", None) and hasattr(layer, "summary"):
            for sub in layer.layers:
                rows.extend(rows_of(sub, level + 1))
        return rows
    layers = model.layers
    start, end = _layer_range(layers, layer_range)
    rows = [r for layer in layers[start:end] for r in rows_of(layer)]
    trainable = model.trainable_weights
    non_trainable = model.non_trainable_weights
    optimizer = getattr(model, "optimizer", None)
    optimizer_vars = list(optimizer.variables) if optimizer is not None and getattr(optimizer, "built", False) else []
    total = count_params(trainable) + count_params(non_trainable) + count_params(optimizer_vars)
    total_mem = _memory(trainable) + _memory(non_trainable) + _memory(optimizer_vars)
    lines = [f'Model: "{model.name}"']
    lines += _render(header, rows, cells, alignment)
    lines.append(f" Total params: {total:,} ({readable_memory_size(total_mem)})")
    lines.append(f" Trainable params: {count_params(trainable):,} ({readable_memory_size(_memory(trainable))})")
    lines.append(f" Non-trainable params: {count_params(non_trainable):,} "
                 f"({readable_memory_size(_memory(non_trainable))})")
    if optimizer_vars:
        lines.append(f" Optimizer params: {count_params(optimizer_vars):,} "
                     f"({readable_memory_size(_memory(optimizer_vars))})")
    text = "\n".join(lines)
    if print_fn is None:
        print(text)
    else:
        print_fn(text + "\n")


def _layer_range(layers, layer_range):
    if layer_range is None:
        return 0, len(layers)
    if len(layer_range) != 2:
        raise ValueError(f"layer_range must be a list or tuple of length 2. Received: layer_range={layer_range} "
                         f"of length {len(layer_range)}")
    names = [layer.name for layer in layers]
    starts = [i for i, n in enumerate(names) if re.match(layer_range[0], n)]
    ends = [i for i, n in enumerate(names) if re.match(layer_range[1], n)]
    if not starts or not ends:
        raise ValueError(f"Passed layer_range does not match any layer names. Received: layer_range={layer_range}")
    return starts[0], ends[-1] + 1
