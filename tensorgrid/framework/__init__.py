"""Types shared by every layer: dtypes, shapes, errors, device names."""
