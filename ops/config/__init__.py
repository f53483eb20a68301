"""The ground floor of `ops`: what every package may import.

`settings.Settings` (pydantic-settings, built once at each entry point and passed down), `logs` (structlog
set-up, secret scrubbing), `secret_keys` (one key per purpose derived from `STOFLOW_SECRET_KEY`) and
`reference_data` (the attribute and platform-mapping files that seed the database). No I/O beyond reading the
environment and those files; imports only `domain`.
"""
