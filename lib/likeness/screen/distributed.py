"""Per-video screening on a Ray cluster: one actor per worker, models loaded once per actor.

Used only when ``--ray`` is given: ``local`` starts a local cluster on this machine (and stops
it at the end), an address (``ray://host:10001`` or ``host:6379``) joins an existing cluster,
whose nodes must have likeness installed and see the same output folder (shared storage).
Ray's own ``ActorPool`` hands the videos to the actors; no scheduler, queue or RPC of our own.
Each actor is a :class:`likeness.screen.worker.VideoScreener`: it writes each video's result
file itself, exactly as in-process, and returns it; the driver gathers the results in the
listing's order, so the output tables are those of an in-process run.

An actor asks Ray for one CPU and, when the cluster has GPUs, a GPU (or an equal share of them):
the embedder and MTCNN then run on it (``device: auto``).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from likeness.errors import CaseError
from likeness.screen.worker import VideoScreener, Watch


def _init(address: str, workers: int | None) -> tuple[bool, int]:
    """Start or join the cluster; returns (started here, number of actors)."""
    import ray

    if address == "local":
        try:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        except Exception as exc:  # Ray raises a bare Exception when its processes are slow
            raise CaseError(f"--ray local: the local Ray cluster did not start ({exc}); "
                            "retry when the machine is less loaded, or run without --ray") from exc
        started = True
    else:
        try:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise CaseError(f"--ray {address}: cannot join the Ray cluster ({exc}); "
                            "check the address, or use --ray local") from exc
        started = False
    n = workers or max(int(ray.cluster_resources().get("CPU", 1)), 1)
    return started, n


def screen_on_ray(
    listing: pd.DataFrame, watch: Watch, address: str, *, workers: int | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Screen every video of ``listing`` on Ray; results in the listing's order."""
    import ray
    from ray.util import ActorPool

    started, n_workers = _init(address, workers)
    try:
        gpus = float(ray.cluster_resources().get("GPU", 0))
        per_actor_gpu = min(1.0, gpus / n_workers) if gpus else 0
        actor = ray.remote(VideoScreener).options(num_cpus=1, num_gpus=per_actor_gpu)
        watch_ref = ray.put(watch)
        pool = ActorPool([actor.remote(watch_ref) for _ in range(n_workers)])
        rows = list(listing.itertuples(index=False))
        results = []
        for result in tqdm(pool.map(lambda a, r: a.screen.remote(r.video, r.path), rows),
                           total=len(rows), desc="videos (ray)", unit="video",
                           disable=not progress):
            results.append(result)
        return results
    finally:
        if started:
            ray.shutdown()
