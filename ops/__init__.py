"""Operations, in four floors; what each may import is checked by `tests/unit/test_import_rules.py`.

- `ops.config`: settings, structured logs, per-purpose derived keys, the reference data. Every package may
  import it; it imports only `domain`.
- `ops.adapters`: Redis- and key-backed services the gateway and the workers share (rate limits, metrics,
  heartbeats, the secrets box, signed media URLs). Imports `ops.config` and `domain`.
- `ops.runtime`: what starts processes (the `stoflow` CLI, supervisor, embedded services, seed, demo). May
  import everything; nothing imports it. `python -m ops` is its command line.
- `ops.tools`: applications beside the platform (the marketplace sandbox, the reference plugin client). They
  talk to the platform over its HTTP API only and import nothing of it but `ops.config`.
"""
