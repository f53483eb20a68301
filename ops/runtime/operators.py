"""`stoflow operator create`: an operator account with a fresh one-time password."""

from __future__ import annotations

import secrets

from email_validator import EmailNotValidError, validate_email

from domain.errors import EmailTaken
from gateway.passwords import PasswordHasher
from ops.config.settings import Settings
from persistence.database import connect_database
from persistence.operators import set_operator_password


async def create_operator(settings: Settings, email: str) -> tuple[str, bool]:
    """Create the operator or reset its password; return (password, created). ValueError for a bad email."""
    try:
        address = validate_email(email, check_deliverability=False).normalized
    except EmailNotValidError as error:
        raise ValueError(f"not a valid email: {error}") from None
    password = secrets.token_urlsafe(18)
    password_hash = await PasswordHasher(settings.bcrypt_rounds).hash(password)
    database = connect_database(settings.async_database_url, pool_size=1)
    try:
        async with database.session_factory() as session:
            try:
                created = await set_operator_password(session, address, password_hash)
            except EmailTaken as error:
                raise ValueError(str(error)) from None
            await session.commit()
    finally:
        await database.dispose()
    return password, created
