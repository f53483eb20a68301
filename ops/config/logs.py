"""structlog set-up: console on a terminal, JSON otherwise, optional rotating file.

Each request and each job clears the context and binds its own ids (`request_id`, `tenant_id`, `job_id`,
`platform`) through contextvars, so every line of that work carries them.
"""

from __future__ import annotations

import logging
import logging.handlers
import re
import sys

import structlog
from sqlalchemy.exc import StatementError

from ops.config.settings import Settings

_SECRET_KEYS = frozenset(
    {
        "password",
        "password_hash",
        "access_token",
        "refresh_token",
        "token",
        "authorization",
        "secret",
        "jwt_secret_key",
        "stoflow_secret_key",
        "params",
        "parameters",
    }
)

#: Text shapes that are secrets wherever they appear: bcrypt hashes (even cut short), JWTs, Fernet tokens,
#: the parameter list SQLAlchemy appends to an error's message, and the values PostgreSQL and asyncpg quote.
_SECRET_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\$2[abxy]?\$\d{2}\$[./A-Za-z0-9]{8,53}"), "[redacted-hash]"),
    (re.compile(r"eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+"), "[redacted-token]"),
    (re.compile(r"gAAAAA[\w-]{20,}=*"), "[redacted-token]"),
    (re.compile(r"\[parameters: .*?\](?=\n|$)", re.DOTALL), "[parameters: redacted]"),
    (re.compile(r"Key \((.*?)\)=\(.*?\)(?= already exists| is not present|\n|$)"), r"Key (\1)=(redacted)"),
    # asyncpg and PostgreSQL quote the offending value in their messages.
    (re.compile(r"(query argument \$\d+: ).*?(?= \(|\n|$)"), r"\1[redacted]"),
    (re.compile(r"(invalid input (?:syntax|value) for [\w ]+: ).*?(?=\n|$)"), r"\1[redacted]"),
)


#: What every pattern above starts with: a text with none of these has nothing to scrub (one search, not
#: seven, for the plain values of nearly every log line).
_SECRET_ANCHORS = re.compile(r"\$2|eyJ|gAAAAA|\[parameters: |Key \(|query argument \$|invalid input ")


def scrub_text(text: str) -> str:
    """Replace every secret-shaped part of a text."""
    if _SECRET_ANCHORS.search(text) is None:
        return text
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _hide_sql_parameters(
    _logger: object, _method: str, event_dict: structlog.types.EventDict
) -> structlog.types.EventDict:
    """SQLAlchemy errors print their statement's parameters (a password hash, a token) unless told not to."""
    exc_info = event_dict.get("exc_info")
    error = exc_info if isinstance(exc_info, BaseException) else None
    if isinstance(exc_info, tuple) and len(exc_info) == 3:
        error = exc_info[1]
    elif exc_info is True:
        error = sys.exc_info()[1]
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, StatementError):
            error.hide_parameters = True
        error = error.__cause__ or error.__context__
    return event_dict


def redact_secrets(
    _logger: object, _method: str, event_dict: structlog.types.EventDict
) -> structlog.types.EventDict:
    """Never let a credential reach a log line, whatever a caller bound or an exception carried."""
    for key, value in event_dict.items():
        if key in _SECRET_KEYS:
            event_dict[key] = "[redacted]"
        elif isinstance(value, str):
            event_dict[key] = scrub_text(value)
    return event_dict


#: Runs after the others: exceptions are rendered to text first, so that text is scrubbed too.
SCRUBBING_PROCESSORS: list[structlog.types.Processor] = [
    _hide_sql_parameters,
    structlog.processors.format_exc_info,
    redact_secrets,
]


def configure_logging(settings: Settings) -> None:
    """Route structlog and the standard library through one renderer chosen from the settings."""
    use_json = settings.log_format == "json" or (settings.log_format is None and not sys.stderr.isatty())
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        *SCRUBBING_PROCESSORS,
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        # Below the level, a line is dropped before any processor runs (a DEBUG line costs nothing).
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
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
    # ARQ writes two INFO lines per job (started, finished) that say less than our own job lines, which are
    # DEBUG (the history row records every attempt): at INFO they would be most of a busy pool's log and
    # CPU. Its warnings and errors (a job expired, a job function crashed) still come through.
    level = root.getEffectiveLevel()
    logging.getLogger("arq.worker").setLevel(level if level <= logging.DEBUG else max(level, logging.WARNING))
