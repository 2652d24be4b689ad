"""Device names: parsing partial specs, merging them as TF does, matching full names."""

import dataclasses
import functools
import re

_PART = re.compile(r"^(job|replica|task|device|cpu|gpu|CPU|GPU)(?::(.*))?$")


@dataclasses.dataclass(frozen=True)
class DeviceSpec:
    """A possibly partial device name; None fields are unspecified."""

    job: str | None = None
    replica: int | None = None
    task: int | None = None
    device_type: str | None = None
    device_index: int | None = None

    @classmethod
    def from_string(cls, spec):
        """Parses '/job:ps/task:1/device:GPU:0', '/gpu:0', '/cpu:*', '' and the like."""
        if isinstance(spec, DeviceSpec):
            return spec
        if spec is None or spec == "":
            return cls()
        return _parse(spec)

    @classmethod
    def _parse_uncached(cls, spec):
        fields = {}
        for part in spec.strip().split("/"):
            if not part:
                continue
            m = _PART.match(part)
            if not m:
                raise ValueError(f"malformed device spec {spec!r}: cannot parse {part!r}")
            key, val = m.group(1), m.group(2)
            try:
                if key == "job":
                    fields["job"] = val
                elif key in ("replica", "task"):
                    fields[key] = None if val in (None, "*") else int(val)
                elif key == "device":
                    kind, _, idx = (val or "").partition(":")
                    fields["device_type"] = kind.upper() or None
                    fields["device_index"] = None if idx in ("", "*") else int(idx)
                else:
                    fields["device_type"] = key.upper()
                    fields["device_index"] = None if val in (None, "", "*") else int(val)
            except ValueError:
                raise ValueError(f"malformed device spec {spec!r}: bad number in {part!r}") from None
        return cls(**fields)

    def merge_from(self, inner):
        """Returns this (outer) spec overridden by the fields `inner` sets."""
        inner = DeviceSpec.from_string(inner)
        values = {f: getattr(self, f) for f in _FIELDS}
        for f in _FIELDS:
            v = getattr(inner, f)
            if v is not None:
                values[f] = v
        if inner.device_type is not None and inner.device_index is None:
            values["device_index"] = None
        return DeviceSpec(**values)

    def to_string(self):
        parts = []
        if self.job is not None:
            parts.append(f"/job:{self.job}")
        if self.replica is not None:
            parts.append(f"/replica:{self.replica}")
        if self.task is not None:
            parts.append(f"/task:{self.task}")
        if self.device_type is not None:
            idx = "*" if self.device_index is None else self.device_index
            parts.append(f"/device:{self.device_type}:{idx}")
        return "".join(parts)

    def matches(self, full):
        """True when every field set here equals that field of the full device `full`."""
        full = DeviceSpec.from_string(full)
        for f in _FIELDS:
            v = getattr(self, f)
            if v is not None and v != getattr(full, f):
                return False
        return True

    def is_empty(self):
        return all(getattr(self, f) is None for f in _FIELDS)

    def __str__(self):
        return self.to_string()


_FIELDS = ("job", "replica", "task", "device_type", "device_index")


@functools.lru_cache(maxsize=4096)
def _parse(spec):
    return DeviceSpec._parse_uncached(spec)


@functools.lru_cache(maxsize=4096)
def canonical(spec):
    """The canonical string of a device spec ('' stays '')."""
    return DeviceSpec.from_string(spec).to_string()


@functools.lru_cache(maxsize=4096)
def merge(outer, inner):
    """Merges device spec strings, the inner one winning field by field."""
    return DeviceSpec.from_string(outer).merge_from(inner).to_string()


def full_name(job, task, device_type, index, replica=0):
    return f"/job:{job}/replica:{replica}/task:{task}/device:{device_type}:{index}"
