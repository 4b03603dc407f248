"""The server on Ray Serve: several replicas, each holding one engine, behind one HTTP endpoint.

Ray places the replicas (one process each, on any node of the cluster), routes requests between them and
can autoscale them; inside a replica everything is the single-machine server (its scheduler batches that
replica's requests; tensor parallelism inside a replica stays torch.distributed). Needs the ``serve-ray``
extra. Three ways in::

    hogwild serve --ray --replicas 2 --model hogwild-test:tiny-random-qwen2 --port 8000
    serve run hogwild_agents.server.ray_app:build_app replicas=2 workers=2
    python -c "from hogwild_agents.server.ray_app import deployment; ..."   # serve.run(deployment(...))

Every response carries ``x-hogwild-pid``, the replica's process id (``/health`` reports it too).
"""

from __future__ import annotations

import signal
import time
from typing import Any

__all__ = ["build_app", "deployment", "serve_ray"]


def deployment(
    model: str | None = None,
    *,
    replicas: int = 1,
    workers: int = 2,
    num_cpus: float = 1.0,
    num_gpus: float = 0.0,
    autoscaling: dict[str, Any] | None = None,
    **config: Any,
) -> Any:
    """A bound Ray Serve application: ``replicas`` copies of the server, each loading its own engine.

    Args:
        model: as for ``hogwild serve --model``.
        replicas: number of replicas (ignored when ``autoscaling`` is given).
        workers: default workers per request.
        num_cpus: CPUs Ray reserves for each replica.
        num_gpus: GPUs Ray reserves for each replica (1 for one engine per GPU).
        autoscaling: a Ray Serve ``autoscaling_config`` (min_replicas, max_replicas, ...).
        **config: :class:`HogwildConfig` fields of every replica's engine.
    """
    from ray import serve

    from .app import create_app
    from .serve import load_engine, model_label

    def build() -> Any:  # runs in each replica: each builds its own engine before taking requests
        return create_app(
            lambda: load_engine(model, workers, **config),
            model_name=model_label(model),
            background_load=False,
        )

    options: dict[str, Any] = {"ray_actor_options": {"num_cpus": num_cpus, "num_gpus": num_gpus}}
    if autoscaling is not None:
        options["autoscaling_config"] = autoscaling
    else:
        options["num_replicas"] = replicas

    @serve.deployment(name="hogwild", **options)
    @serve.ingress(build)
    class HogwildServer:
        """One replica: the FastAPI app of :func:`hogwild_agents.server.create_app` around its engine."""

    return HogwildServer.bind()


def build_app(args: dict[str, str]) -> Any:
    """Application builder for ``serve run hogwild_agents.server.ray_app:build_app key=value ...``.

    Keys: ``model``, ``replicas``, ``workers``, ``num_cpus``, ``num_gpus``.
    """
    return deployment(
        args.get("model"),
        replicas=int(args.get("replicas", 1)),
        workers=int(args.get("workers", 2)),
        num_cpus=float(args.get("num_cpus", 1)),
        num_gpus=float(args.get("num_gpus", 0)),
    )


def serve_ray(
    model: str | None = None,
    *,
    replicas: int = 1,
    workers: int = 2,
    host: str = "127.0.0.1",
    port: int = 8000,
    num_cpus: float | None = None,
    **config: Any,
) -> None:
    """Start (or join, with ``RAY_ADDRESS``) a Ray cluster; serve ``replicas`` replicas until interrupted."""
    import ray
    from ray import serve

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    per_replica = num_cpus if num_cpus is not None else 0.5
    ray.init(include_dashboard=False, configure_logging=False, ignore_reinit_error=True)
    # After ray.init, which installs its own handler: a terminated server shuts its Ray instance down.
    signal.signal(signal.SIGTERM, stop)
    try:
        serve.start(http_options={"host": host, "port": port})
        app = deployment(model, replicas=replicas, workers=workers, num_cpus=per_replica, **config)
        serve.run(app, name="hogwild", route_prefix="/")
        print(f"hogwild: {replicas} replica(s) on Ray Serve at http://{host}:{port}", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
        ray.shutdown()
