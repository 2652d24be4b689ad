"""Cluster resolvers (tf.distribute.cluster_resolver): where a strategy learns the cluster and its own task.

TFConfigClusterResolver reads the TF_CONFIG environment variable as TF does:
`{"cluster": {"worker": ["host:port", ...], "chief": [...], "ps": [...]}, "task": {"type": "worker",
"index": 0}, "rpc_layer": "grpc"}`; SimpleClusterResolver is given the same pieces directly.
"""

import json
import os

from tensorgrid.client.train.cluster_spec import ClusterSpec

__all__ = ["ClusterResolver", "TFConfigClusterResolver", "SimpleClusterResolver"]


class ClusterResolver:
    """The cluster, this process's task in it, and how to reach a task."""

    task_type = None
    task_id = None
    rpc_layer = None
    environment = ""

    def cluster_spec(self):
        raise NotImplementedError

    def master(self, task_type=None, task_id=None, rpc_layer=None):
        """'grpc://host:port' of the task (this one by default); '' when it is not in the cluster."""
        task_type = self.task_type if task_type is None else task_type
        task_id = self.task_id if task_id is None else task_id
        if task_type is None or task_id is None:
            return ""
        try:
            address = self.cluster_spec().task_address(task_type, task_id)
        except ValueError:
            return ""
        layer = rpc_layer if rpc_layer is not None else self.rpc_layer
        return f"{layer}://{address}" if layer else address

    def num_accelerators(self, task_type=None, task_id=None, config_proto=None):
        """{device type: count} of accelerators: none here (CPU devices only)."""
        return {}


class TFConfigClusterResolver(ClusterResolver):
    """The cluster and task of the TF_CONFIG environment variable (read at each call, as TF's)."""

    def __init__(self, task_type=None, task_id=None, rpc_layer=None, environment=None):
        self._task_type = task_type
        self._task_id = task_id
        self._rpc_layer = rpc_layer
        self._environment = environment

    @staticmethod
    def _config():
        text = os.environ.get("TF_CONFIG", "")
        if not text:
            return {}
        try:
            config = json.loads(text)
        except ValueError as e:
            raise ValueError(f"TF_CONFIG is not valid JSON: {e}") from None
        if not isinstance(config, dict):
            raise ValueError(f"TF_CONFIG must be a JSON object, not {text!r}")
        return config

    @property
    def task_type(self):
        if self._task_type is not None:
            return self._task_type
        return self._config().get("task", {}).get("type")

    @task_type.setter
    def task_type(self, value):
        self._task_type = value

    @property
    def task_id(self):
        if self._task_id is not None:
            return self._task_id
        index = self._config().get("task", {}).get("index")
        return None if index is None else int(index)

    @task_id.setter
    def task_id(self, value):
        self._task_id = value

    @property
    def rpc_layer(self):
        if self._rpc_layer is not None:
            return self._rpc_layer
        return self._config().get("rpc_layer")

    @rpc_layer.setter
    def rpc_layer(self, value):
        self._rpc_layer = value

    @property
    def environment(self):
        return self._environment if self._environment is not None else self._config().get("environment", "")

    def cluster_spec(self):
        return ClusterSpec(self._config().get("cluster", {}))


class SimpleClusterResolver(ClusterResolver):
    """A resolver over a given ClusterSpec (or dict), task and master."""

    def __init__(self, cluster_spec, master="", task_type=None, task_id=None, environment="", num_accelerators=None,
                 rpc_layer=None):
        self._cluster_spec = ClusterSpec(cluster_spec)
        self._master = master
        self.task_type = task_type
        self.task_id = task_id
        self.environment = environment
        self._num_accelerators = num_accelerators or {}
        self.rpc_layer = rpc_layer

    def cluster_spec(self):
        return self._cluster_spec

    def master(self, task_type=None, task_id=None, rpc_layer=None):
        if task_type is not None and task_id is not None:
            return super().master(task_type, task_id, rpc_layer)
        return self._master

    def num_accelerators(self, task_type=None, task_id=None, config_proto=None):
        return dict(self._num_accelerators)
