"""tg.train.ClusterSpec: the jobs of a cluster and the network address of each of their tasks."""

__all__ = ["ClusterSpec"]


class ClusterSpec:
    """Jobs -> tasks -> "host:port", built from {"ps": ["h:p", ...], "worker": {0: "h:p", ...}}, a ClusterDef or
    another ClusterSpec."""

    def __init__(self, cluster):
        from tensorgrid.proto import cluster_pb2
        if isinstance(cluster, ClusterSpec):
            cluster = cluster.as_dict()
        elif isinstance(cluster, cluster_pb2.ClusterDef):
            cluster = {job.name: dict(job.tasks) for job in cluster.job}
        if not isinstance(cluster, dict):
            raise TypeError(f"`cluster` must be a dictionary mapping one or more job names to lists of network "
                            f"addresses, or a `ClusterSpec` or `ClusterDef`, not {type(cluster).__name__}")
        self._jobs = {}
        for job, tasks in cluster.items():
            if not isinstance(job, str):
                raise TypeError(f"job names must be strings, not {job!r}")
            if isinstance(tasks, (list, tuple)):
                tasks = dict(enumerate(tasks))
            elif not isinstance(tasks, dict):
                raise TypeError(f"The tasks for job {job!r} must be a list or a dictionary from integers to "
                                f"strings, not {type(tasks).__name__}")
            for i, address in tasks.items():
                if not isinstance(i, int) or isinstance(i, bool) or i < 0:
                    raise TypeError(f"task index {i!r} of job {job!r} must be a non-negative integer")
                if not isinstance(address, str):
                    raise TypeError(f"the address of task {i} of job {job!r} must be a string, not {address!r}")
            self._jobs[job] = dict(sorted(tasks.items()))

    def __bool__(self):
        return bool(self._jobs)

    def __eq__(self, other):
        return isinstance(other, ClusterSpec) and self._jobs == other._jobs

    def __ne__(self, other):
        return not self == other

    __hash__ = None

    def __repr__(self):
        return f"ClusterSpec({self.as_dict()!r})"

    def as_dict(self):
        """{job: [addresses]} where a job's task indices run 0..n-1, else {job: {index: address}}."""
        out = {}
        for job, tasks in self._jobs.items():
            dense = list(tasks) == list(range(len(tasks)))
            out[job] = list(tasks.values()) if dense else dict(tasks)
        return out

    def as_cluster_def(self):
        """The ClusterDef protobuf (proto/cluster.proto) of this cluster."""
        from tensorgrid.proto import cluster_pb2
        out = cluster_pb2.ClusterDef()
        for job in self.jobs:
            out.job.add(name=job, tasks=self._jobs[job])
        return out

    @property
    def jobs(self):
        """The job names, sorted."""
        return sorted(self._jobs)

    def _tasks(self, job_name):
        try:
            return self._jobs[job_name]
        except KeyError:
            raise ValueError(f"No such job in cluster: {job_name!r}") from None

    def num_tasks(self, job_name):
        """How many tasks job `job_name` has."""
        return len(self._tasks(job_name))

    def task_indices(self, job_name):
        """The task indices of job `job_name`, sorted."""
        return list(self._tasks(job_name))

    def task_address(self, job_name, task_index):
        """The "host:port" of task `task_index` of job `job_name`."""
        tasks = self._tasks(job_name)
        try:
            return tasks[task_index]
        except KeyError:
            raise ValueError(f"No task with index {task_index!r} in job {job_name!r}") from None

    def job_tasks(self, job_name):
        """The addresses of job `job_name` by task index, None where an index has no task."""
        tasks = self._tasks(job_name)
        if not tasks:
            return []
        return [tasks.get(i) for i in range(max(tasks) + 1)]
