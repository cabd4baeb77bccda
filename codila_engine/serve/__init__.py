"""The team server: one engine on Ray Serve, language servers and other programs as thin clients.

- wire.py: the HTTP API's messages (a decode request in, one JSON line per event out), checked.
- auth.py: bearer tokens (from a file or an environment variable) and per-client limits.
- batching.py: concurrent decodes on one replica share their DLM forwards.
- replica.py: one replica's engine: decodes on threads, streamed, cancelled within one iteration.
- gateway.py: the HTTP front: authentication, limits, validation, routing, retry, cancel.
- app.py: the Ray Serve deployments and `codila serve`'s start and clean shutdown.
- client.py: RemoteEngine, the Engine interface over HTTP (standard library only).
- bench.py: first-draft latency and throughput under concurrent clients.

Only client.py, wire.py and auth.py run without Ray; nothing here is imported by the engine.
"""
