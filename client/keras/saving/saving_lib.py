"""`.weights.h5` files and `.keras` archives, in Keras 3's layout.

A `.weights.h5` file (HDF5, readable with h5py) holds one group per layer,
named by where the layer sits: `layers/<name>` for the layers of a
Sequential or functional model, `<name>` their class in snake_case made
unique in order (`dense`, `dense_1`, ... whatever the layers are called),
and `<attribute>` for a layer held in another layer's attribute (an RNN's
`cell`: `layers/lstm/cell`; a list attribute: `blocks/dense`, `blocks/dense_1`),
nested as deep as the layers are. Each group
has a `vars` group whose datasets `0`, `1`, ... are the layer's own
variables, trainable ones first, in creation order (a Dense's kernel then
bias; BatchNormalization's gamma, beta, moving_mean, moving_variance), with
the attribute `name` = the layer's name. The model's own variables are in the
top-level `vars`, an optimizer's in `optimizer/vars` (iterations, learning
rate, then its slots, variable by variable). This is the layout Keras 3
writes, so weights move between Keras and tensorgrid in both directions.

A `.keras` file is a zip of `metadata.json` (versions, date), `config.json`
(the model's config, with its compile config: see serialization.py) and
`model.weights.h5`. Every file is written to a temporary name beside the
target and renamed, so a reader never sees a half-written one.
"""

import datetime
import io
import json
import os
import tempfile
import zipfile

import numpy as np

__all__ = ["save_weights", "load_weights", "save_model", "load_model"]

_VERSION = "3.15.1"   # the Keras version whose file layout this follows


def _h5py():
    try:
        import h5py
    except ImportError as e:
        raise ImportError("Saving and loading `.weights.h5` and `.keras` files needs h5py: "
                          "pip install 'tensorgrid[keras]'") from e
    return h5py


def _unique_class_names(layers):
    """Each layer's group name in a list of them: its class in snake_case, `_1`, `_2`, ... for repeats."""
    from tensorgrid.client.keras.layers.base import _snake_case
    counts, names = {}, []
    for layer in layers:
        base = _snake_case(type(layer).__name__)
        n = counts.get(base, 0)
        counts[base] = n + 1
        names.append(base if n == 0 else f"{base}_{n}")
    return names


def _children(layer):
    """(group name, sublayer) for what a layer's weights file holds under it, as Keras 3 walks a model:
    a Sequential's or functional model's layers under `layers/`, any other layer's by attribute."""
    from tensorgrid.client.keras.models.functional import Functional
    from tensorgrid.client.keras.models.sequential import Sequential
    if isinstance(layer, (Functional, Sequential)):
        layers = layer.layers
        return [(f"layers/{name}", sub) for name, sub in zip(_unique_class_names(layers), layers)]
    named, seen = [], set()
    for attr, value in sorted(vars(layer).items()):
        if attr.startswith("_"):
            continue
        subs = [v for v in (value if isinstance(value, (list, tuple)) else [value])
                if any(v is s for s in layer._layers) and id(v) not in seen]
        seen.update(id(v) for v in subs)
        if isinstance(value, (list, tuple)):
            named.extend((f"{attr}/{name}", sub) for name, sub in zip(_unique_class_names(subs), subs))
        elif subs:
            named.append((attr, subs[0]))
    return named


def _walk(layer, prefix=""):
    """(path, layer) of layer and every layer below it, depth first."""
    yield prefix, layer
    for name, sub in _children(layer):
        yield from _walk(sub, f"{prefix}/{name}" if prefix else name)


def _write_weights(h5file, model, optimizer=None):
    for path, layer in _walk(model):
        group = h5file.require_group(f"{path}/vars" if path else "vars")
        group.attrs["name"] = layer.name
        for i, v in enumerate(layer._own_variables()):
            group.create_dataset(str(i), data=np.asarray(v.numpy()))
    if optimizer is not None and getattr(optimizer, "built", False):
        group = h5file.require_group("optimizer/vars")
        group.attrs["name"] = optimizer.name
        for i, v in enumerate(optimizer.variables):
            group.create_dataset(str(i), data=np.asarray(v.numpy()))


def _read_weights(h5file, model, optimizer=None):
    assignments = []
    for path, layer in _walk(model):
        own = layer._own_variables()
        key = f"{path}/vars" if path else "vars"
        if key not in h5file:
            if own:
                raise ValueError(f"Layer '{layer.name}' expected {len(own)} variables, but the file has no group "
                                 f"'{key}' for it (groups there: {sorted(h5file.keys())})")
            continue
        group = h5file[key]
        if len(group) != len(own):
            raise ValueError(f"Layer '{layer.name}' expected {len(own)} variables, but received {len(group)} "
                             f"variables during loading. Expected: {[v.name for v in own]}")
        for i, v in enumerate(own):
            value = np.asarray(group[str(i)])
            if tuple(v.shape.as_tuple()) != value.shape:
                raise ValueError(f"The shape of the target variable and the shape of the target value in "
                                 f"`variable.assign(value)` must match. variable.shape={v.shape.as_tuple()}, "
                                 f"Received: value.shape={value.shape}. Target variable: {v.path}")
            assignments.append((v, value))
    if optimizer is not None and "optimizer/vars" in h5file:
        group = h5file["optimizer/vars"]
        if not getattr(optimizer, "built", False):
            optimizer.build(model.trainable_variables)
        variables = optimizer.variables
        if len(group) != len(variables):
            raise ValueError(f"Optimizer '{optimizer.name}' expected {len(variables)} variables, but received "
                             f"{len(group)} variables during loading.")
        assignments.extend((v, np.asarray(group[str(i)])) for i, v in enumerate(variables))
    for v, value in assignments:   # nothing is assigned unless everything matched
        v.assign(value.astype(v.dtype.as_numpy_dtype))


def _atomic(filepath, write):
    """write(tmp_path) then rename tmp_path to filepath."""
    directory = os.path.dirname(os.path.abspath(filepath))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(filepath), dir=directory)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, filepath)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _check_overwrite(filepath, overwrite):
    if os.path.exists(filepath) and not overwrite:
        raise FileExistsError(f"{filepath} exists and overwrite=False")


def save_weights(model, filepath, overwrite=True):
    filepath = str(filepath)
    if not filepath.endswith(".weights.h5"):
        raise ValueError(f"The filename must end in `.weights.h5`. Received: filepath={filepath}")
    _check_overwrite(filepath, overwrite)
    h5py = _h5py()

    def write(tmp):
        with h5py.File(tmp, "w") as f:
            _write_weights(f, model)
    _atomic(filepath, write)


def _open_h5(source, what):
    h5py = _h5py()
    try:
        return h5py.File(source, "r")
    except OSError as e:
        raise ValueError(f"{what} is not a readable `.weights.h5` (HDF5) file: {e}") from None


def load_weights(model, filepath, skip_mismatch=False):
    filepath = str(filepath)
    if filepath.endswith(".keras"):
        with _open_archive(filepath) as archive:
            with _open_h5(io.BytesIO(archive.read("model.weights.h5")), filepath) as f:
                _read_weights(f, model)
        return
    if not filepath.endswith(".weights.h5"):
        raise ValueError(f"File format not supported: filepath={filepath}. Keras 3 only supports V3 `.keras` and "
                         f"`.weights.h5` files.")
    if not os.path.exists(filepath):
        raise FileNotFoundError(f"File not found: filepath={filepath}. Please ensure the file is an accessible "
                                f"`.weights.h5` file.")
    with _open_h5(filepath, filepath) as f:
        _read_weights(f, model)


def save_model(model, filepath, overwrite=True, zipped=True):
    """Writes model.save's `.keras` archive: config.json, metadata.json, model.weights.h5."""
    from tensorgrid.client.keras.saving import serialization
    filepath = str(filepath)
    if not filepath.endswith(".keras"):
        raise ValueError(f"Invalid filepath extension for saving. Please add either a `.keras` extension for the "
                         f"native Keras format (recommended) or a `.h5` extension. Use `model.export(filepath)` if "
                         f"you want to export a SavedModel for use with TFLite/TFServing/etc. Received: "
                         f"filepath={filepath}.")
    _check_overwrite(filepath, overwrite)
    config = serialization.serialize_keras_object(model)
    metadata = {"keras_version": _VERSION, "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
                "saved_by": "tensorgrid"}
    h5py = _h5py()
    weights = io.BytesIO()
    with h5py.File(weights, "w") as f:
        _write_weights(f, model, getattr(model, "optimizer", None))

    def write(tmp):
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as z:
            z.writestr("metadata.json", json.dumps(metadata))
            z.writestr("config.json", json.dumps(config))
            z.writestr("model.weights.h5", weights.getvalue())
    _atomic(filepath, write)


class _open_archive:
    def __init__(self, filepath):
        if not os.path.exists(filepath):
            raise ValueError(f"File not found: filepath={filepath}. Please ensure the file is an accessible "
                             f"`.keras` zip file.")
        try:
            self.zip = zipfile.ZipFile(filepath, "r")
        except zipfile.BadZipFile:
            raise ValueError(f"{filepath} is not a `.keras` file: a `.keras` file is a zip archive holding "
                             f"config.json and model.weights.h5, and this one is not a zip archive") from None
        names = set(self.zip.namelist())
        missing = [n for n in ("config.json", "model.weights.h5") if n not in names]
        if missing:
            self.zip.close()
            raise ValueError(f"{filepath} is not a `.keras` file: the archive has no {', '.join(missing)} "
                             f"(it holds {sorted(names)})")

    def __enter__(self):
        return self.zip

    def __exit__(self, *exc):
        self.zip.close()
        return False


def load_model(filepath, custom_objects=None, compile=True, safe_mode=True):  # noqa: A002 - Keras's name
    from tensorgrid.client.keras.saving import serialization
    filepath = str(filepath)
    if not filepath.endswith(".keras"):
        raise ValueError(f"File format not supported: filepath={filepath}. Keras 3 only supports V3 `.keras` files "
                         f"and legacy H5 format files (`.h5` extension). Note that the legacy SavedModel format "
                         f"is not supported by `load_model()` in Keras 3.")
    with _open_archive(filepath) as archive:
        try:
            config = json.loads(archive.read("config.json"))
        except ValueError as e:
            raise ValueError(f"{filepath}: config.json is not valid JSON ({e})") from None
        if not compile:
            config = {k: v for k, v in config.items() if k != "compile_config"}
        model = serialization.deserialize_keras_object(config, custom_objects=custom_objects, safe_mode=safe_mode)
        with _open_h5(io.BytesIO(archive.read("model.weights.h5")), filepath) as f:
            _read_weights(f, model, getattr(model, "optimizer", None) if compile else None)
    return model
