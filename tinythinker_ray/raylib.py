"""Starting Ray the one way every driver shares."""

from __future__ import annotations

import os

from .config import Config


def ensure_ray(cfg: Config):
    """Join `cluster.address` ("auto", ray://...) or start a local Ray; a no-op when Ray is already up.

    "local" rather than a bare `ray.init()`: the bare form attaches to any `ray start` cluster on the machine
    and can hang when that one died.
    """
    import ray

    if not ray.is_initialized():
        # Inside `ray job submit` RAY_ADDRESS names the cluster: join it rather than start a private Ray.
        address = cfg.cluster.address or os.environ.get("RAY_ADDRESS")
        if address:
            ray.init(address=address)  # a cluster declares its own CPUs
        else:
            ray.init(address="local", num_cpus=cfg.cluster.num_cpus)
    return ray
