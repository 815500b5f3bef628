"""Commands fanned out through Ray: the book's jobs (:mod:`mlsearch_lib.book.jobs`) and
``predict``'s data-parallel workers (:mod:`mlsearch_lib.evaluation.predict`) both hand Ray a
list of command lines, one process each, on this machine or a cluster (``address="auto"``)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence


def ray_commands(commands: Sequence[list[str]], gpu: Sequence[bool] | bool = False, gpus_per_task: float | None = None,
                 address: str | None = None, num_cpus: int | None = None) -> list[tuple[list[str], str]]:
    """Run each command as one Ray task and return the failed ones as (command, stderr's tail).

    A command that wants a GPU (``gpu``: one flag for all or one per command) asks Ray for
    ``gpus_per_task`` GPUs (default: 1 where the cluster has GPUs, else 0), so Ray runs as many
    at once as there are GPUs; ``num_cpus`` caps a local Ray. The MLSEARCH_/HF_/PYTHON variables
    travel with the tasks."""
    import ray

    flags = [gpu] * len(commands) if isinstance(gpu, bool) else list(gpu)
    env = {k: v for k, v in os.environ.items() if k.startswith(("MLSEARCH_", "HF_", "PYTHON"))}
    ray.init(address=address, num_cpus=num_cpus, runtime_env={"env_vars": env}, include_dashboard=False,
             log_to_driver=False)

    @ray.remote
    def one(cmd: list[str]) -> tuple[list[str], int, str]:
        done = subprocess.run(cmd, capture_output=True, text=True)
        return cmd, done.returncode, done.stderr[-2000:]

    gpus = gpus_per_task if gpus_per_task is not None else float(ray.cluster_resources().get("GPU", 0) > 0)
    try:
        pending = [one.options(num_gpus=gpus if wants else 0).remote(list(cmd)) for cmd, wants in zip(commands, flags)]
        return [(cmd, err) for cmd, rc, err in ray.get(pending) if rc]
    finally:
        ray.shutdown()
