"""The Ray Serve application: a gateway, the engine's replicas and a ledger of recent decodes.

    HTTP (Ray's proxy, --host:--port) -> CodilaGateway (1 replica: auth, limits, checks, retry)
        -> CodilaEngine (--replicas, each with --num-gpus / --num-cpus: the models, decodes)
        -> CodilaLedger (1 replica: what each decode did, for cancels and /v1/requests)

`serve(options)` starts a local Ray instance (or joins one), runs the application and returns
once it answers; `stop()` shuts it down, letting in-flight decodes finish for a grace period.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from dataclasses import dataclass, field

from ray import serve

from codila_engine.serve.auth import Tokens
from codila_engine.serve.gateway import Gateway, Ledger, Limits
from codila_engine.serve.replica import EngineSpec, ReplicaEngine

log = logging.getLogger("ray.serve.codila")
APP = "codila"


@dataclass(frozen=True)
class ServeOptions:
    engine: EngineSpec
    limits: Limits = field(default_factory=Limits)
    host: str = "127.0.0.1"
    port: int = 8000
    replicas: int = 1
    num_cpus: float = 1.0  # per replica (Ray's accounting; torch threads follow it on CPU)
    num_gpus: float = 0.0  # per replica: 1 gives each replica a GPU of its own
    ray_address: str | None = None  # join this Ray cluster; None: start a local one
    health_check_period_s: float = 2.0  # how soon a dead replica is noticed and replaced
    graceful_shutdown_s: float = 20.0  # in-flight decodes finish within this at shutdown
    log_to_driver: bool = True


class _EngineReplica:
    def __init__(self, spec: EngineSpec, ledger) -> None:
        context = serve.get_replica_context()
        self.deployment = context.deployment
        self.core = ReplicaEngine(spec, context.replica_tag)
        self.ledger = ledger

    def info(self) -> dict:
        return {**self.core.info(), "deployment": self.deployment}

    def tokenize(self, text: str) -> list[int]:
        return self.core.tokenize(text)

    async def decode(self, message: dict, uid: str, client: str):
        async for item in self.core.decode(message, uid, client, self._record):
            yield item

    async def _record(self, record: dict) -> None:
        try:
            await self.ledger.record.remote(record)
        except Exception as exc:  # the ledger restarting: a record is lost, the decode is not
            log.warning("could not record decode %s: %s", record["uid"], exc)

    def check_health(self) -> None:
        if self.core.pool._shutdown:
            raise RuntimeError("the decode threads are gone")


MAX_ONGOING = 4096  # requests one gateway or ledger replica takes at once (the gateway's limits answer first)
LedgerDeployment = serve.deployment(
    name="CodilaLedger", num_replicas=1, ray_actor_options={"num_cpus": 0}, max_ongoing_requests=MAX_ONGOING
)(Ledger)
EngineDeployment = serve.deployment(name="CodilaEngine")(_EngineReplica)
GatewayDeployment = serve.deployment(
    name="CodilaGateway", num_replicas=1, ray_actor_options={"num_cpus": 0}, max_ongoing_requests=MAX_ONGOING
)(Gateway)


def application(options: ServeOptions, tokens: Tokens):
    ledger = LedgerDeployment.bind()
    engine = EngineDeployment.options(
        num_replicas=options.replicas,
        ray_actor_options={"num_cpus": options.num_cpus, "num_gpus": options.num_gpus},
        max_ongoing_requests=options.engine.max_decodes,
        health_check_period_s=options.health_check_period_s,
        health_check_timeout_s=max(10.0, 5 * options.health_check_period_s),
        graceful_shutdown_timeout_s=options.graceful_shutdown_s,
    ).bind(options.engine, ledger)
    return GatewayDeployment.options(
        health_check_period_s=options.health_check_period_s,
        graceful_shutdown_timeout_s=options.graceful_shutdown_s,
    ).bind(engine, ledger, tokens, options.limits)


def loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def serve_app(options: ServeOptions, tokens: Tokens) -> str:
    """Start Ray (unless joining one), Serve's HTTP proxy on host:port and the application; returns
    its URL once every replica has loaded the models."""
    import ray

    if not ray.is_initialized():
        if options.ray_address:
            ray.init(address=options.ray_address, include_dashboard=False, log_to_driver=options.log_to_driver)
        else:
            ray.init(
                address="local",
                num_cpus=max(os.cpu_count() or 1, int(options.replicas * options.num_cpus + 0.999)),
                include_dashboard=False,  # its job API runs any code: never on a shared network
                log_to_driver=options.log_to_driver,
                _node_ip_address="127.0.0.1" if loopback(options.host) else None,
            )
    serve.start(http_options={"host": options.host, "port": options.port})
    serve.run(application(options, tokens), name=APP, route_prefix="/")
    host = f"[{options.host}]" if ":" in options.host else options.host
    return f"http://{host}:{options.port}"


def stop() -> None:
    import ray

    try:
        serve.shutdown()
    finally:
        ray.shutdown()
