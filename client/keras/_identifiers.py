"""What `kernel_initializer="glorot_uniform"`, `kernel_regularizer=l2(...)`, ... resolve to: one lookup for
initializers, regularizers and constraints (a name, a config dict, a class, an object or None)."""


def lookup(identifier, classes, kind):
    """The object `identifier` names among `classes` ({name: class}), or identifier itself when callable."""
    if identifier is None:
        return None
    if isinstance(identifier, str):
        cls = classes.get(identifier)
        if cls is None:
            raise ValueError(f"Could not interpret {kind} identifier: {identifier}")
        return cls()
    if isinstance(identifier, dict):
        return deserialize(identifier, classes)
    if isinstance(identifier, type):
        return identifier()
    if callable(identifier):
        return identifier
    raise ValueError(f"Could not interpret {kind} identifier: {identifier}")


def serialize(obj):
    from tensorgrid.client.keras import saving
    return saving.serialize_keras_object(obj)


def deserialize(config, classes, custom_objects=None):
    from tensorgrid.client.keras import saving
    return saving.deserialize_keras_object(config, custom_objects=custom_objects, module_objects=classes)
