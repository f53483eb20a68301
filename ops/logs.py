"""structlog set-up: console on a terminal, JSON otherwise, optional rotating file.

Each request and each job clears the context and binds its own ids (`request_id`, `tenant_id`, `job_id`,
`platform`) through contextvars, so every line of that work carries them.
"""

from __future__ import annotations

import logging
import logging.handlers
import sys

import structlog

from ops.settings import Settings

_SECRET_KEYS = frozenset(
    {"password", "access_token", "refresh_token", "token", "authorization", "secret", "jwt_secret_key"}
)


def _redact_secrets(
    _logger: object, _method: str, event_dict: structlog.types.EventDict
) -> structlog.types.EventDict:
    """Never let a credential reach a log line, whatever a caller bound by mistake."""
    for key in event_dict.keys() & _SECRET_KEYS:
        event_dict[key] = "[redacted]"
    return event_dict


def configure_logging(settings: Settings) -> None:
    """Route structlog and the standard library through one renderer chosen from the settings."""
    use_json = settings.log_format == "json" or (settings.log_format is None and not sys.stderr.isatty())
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact_secrets,
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info if use_json else _identity,
            renderer,
        ],
    )
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if settings.log_file:
        handlers.append(
            logging.handlers.RotatingFileHandler(settings.log_file, maxBytes=10 * 1024 * 1024, backupCount=5)
        )
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    # uvicorn's access log would duplicate our one summary line per request.
    logging.getLogger("uvicorn.access").disabled = True


def _identity(
    _logger: object, _method: str, event_dict: structlog.types.EventDict
) -> structlog.types.EventDict:
    return event_dict
