"""Product images: upload and delete under /api, and the public signed /media route marketplaces fetch.

Two routers live here: `router` (the authenticated /api routes, one unit of work per request) and
`media_router` (public, no auth, no database: the HMAC signature in the URL is the authorisation).

Files and rows: the file is written first and the row after, so a committed row always has its file. If
the transaction then fails, the file is left without a row; such a stray file is harmless (nothing links
to it and its key is random) and could be swept later. Deleting goes the other way: the row first, the
file after the commit, best effort.
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import datetime
from typing import Annotated, Final

import structlog
from fastapi import APIRouter, BackgroundTasks, Depends, File, Form, Response, UploadFile, status
from pydantic import BaseModel
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from domain.lifecycle import ProductStatus
from gateway.dependencies import CurrentPrincipal, Services, TenantSession, UnitOfWorkRoute
from gateway.image_processing import (
    MAX_UPLOAD_BYTES,
    ImageRejected,
    ImageTooLarge,
)
from gateway.problems import ProblemError
from gateway.request_input import parse_path_id
from gateway.services import GatewayServices
from ops.adapters.media_urls import image_url, media_verification_secrets, verify_media_signature
from ops.config.settings import Settings
from persistence.media_storage import (
    InvalidMediaKey,
    LocalMediaStorage,
    MediaNotFound,
    MediaStorage,
    MediaStorageError,
    check_key,
    product_image_key,
)
from persistence.tenancy import scope_to_tenant, tenant_schema
from persistence.tenant_models import Product, ProductImage

log = structlog.get_logger(__name__)

MAX_IMAGES_PER_PRODUCT: Final = 20
MAX_DISPLAY_ORDER: Final = 1_000_000
# Marketplaces may fetch an image many times while listing; its bytes never change under a key.
_MEDIA_CACHE_SECONDS: Final = 24 * 3600

_EXPIRES: Final = re.compile(r"[0-9]{1,12}")
_SIGNATURE: Final = re.compile(r"[0-9a-f]{64}")  # a hex SHA-256 HMAC, as ops.adapters.media_urls writes it
_KEY_OWNER: Final = re.compile(r"t([1-9][0-9]{0,9})/p([1-9][0-9]{0,9})/")

router = APIRouter(tags=["catalogue"], route_class=UnitOfWorkRoute)
media_router = APIRouter(tags=["media"])


class ProductImageOut(BaseModel):
    """An image of a product; `url` is signed and expires (7 days), marketplaces fetch it as it is."""

    id: int
    url: str
    display_order: int
    width: int
    height: int
    created_at: datetime


def image_out(settings: Settings, image: ProductImage) -> ProductImageOut:
    """Represent an image row (also for the product document's `images`)."""
    return ProductImageOut(
        id=image.id,
        url=image_url(settings, image.storage_key),
        display_order=image.display_order,
        width=image.width,
        height=image.height,
        created_at=image.created_at,
    )


async def media_storage(services: Services) -> MediaStorage:
    """The storage backend; local disk under MEDIA_ROOT (cheap to build: it only holds a path)."""
    return LocalMediaStorage(services.settings.media_root)


Storage = Annotated[MediaStorage, Depends(media_storage)]


def _not_found(what: str = "product") -> ProblemError:
    return ProblemError(404, "not_found", f"No such {what}.")


def _parse_id(raw: str, what: str) -> int:
    """Path ids are positive PostgreSQL integers; anything else is simply not one of ours."""
    parsed = parse_path_id(raw)
    if parsed is None:
        raise _not_found(what)
    return parsed


async def _product_status(session: AsyncSession, product_id: int, *, lock: bool) -> str:
    """The status of a live product, optionally locking its row; 404 for a missing or deleted one."""
    query = select(Product.status).where(Product.id == product_id, Product.deleted_at.is_(None))
    if lock:
        query = query.with_for_update()
    product_status = await session.scalar(query)
    if product_status is None:
        raise _not_found()
    # An archived product is read-only (PATCH answers 409 invalid_state too), its images included.
    if product_status == ProductStatus.ARCHIVED:
        raise ProblemError(409, "invalid_state", "An archived product's images cannot be changed.")
    return product_status


async def _image_count_and_last_order(session: AsyncSession, product_id: int) -> tuple[int, int | None]:
    row = (
        await session.execute(
            select(func.count(), func.max(ProductImage.display_order)).where(
                ProductImage.product_id == product_id
            )
        )
    ).one()
    return int(row[0]), row[1]


def _refuse_if_full(count: int) -> None:
    if count >= MAX_IMAGES_PER_PRODUCT:
        raise ProblemError(
            409,
            "too_many_images",
            f"A product has at most {MAX_IMAGES_PER_PRODUCT} images; delete one first.",
        )


def _next_order(last_order: int | None) -> int:
    """Just after the last image (0 for the first)."""
    return 0 if last_order is None else last_order + 1


def _remove_file(storage: MediaStorage, key: str) -> None:
    """Delete a file whose row is gone (or never committed); failure only leaves a harmless stray."""
    try:
        storage.delete(key)
    except (OSError, MediaStorageError):
        log.warning("media_file_not_removed", storage_key=key, exc_info=True)


@router.post(
    "/api/products/{product_id}/images",
    status_code=status.HTTP_201_CREATED,
    response_model=ProductImageOut,
    responses={
        404: {"description": "No such product (missing, another tenant's, or deleted): `not_found`"},
        409: {"description": "`invalid_state` (archived product) or `too_many_images` (20 already)"},
        413: {"description": "`too_large`: over 10 MB, or over 40 megapixels"},
        415: {"description": "`unsupported_media_type`: not a decodable JPEG, PNG or WebP"},
    },
)
async def upload_product_image(
    product_id: str,
    session: TenantSession,
    principal: CurrentPrincipal,
    services: Services,
    storage: Storage,
    file: Annotated[UploadFile, File(description="JPEG, PNG or WebP; at most 10 MB and 40 megapixels")],
    display_order: Annotated[
        int | None,
        Form(ge=0, le=MAX_DISPLAY_ORDER, description="Position among the images; default: after the last"),
    ] = None,
) -> ProductImageOut:
    """Add an image to a product.

    The upload is decoded to check it (its name and declared type are ignored), then stored as a
    normalised JPEG: upright, without EXIF/GPS or any other metadata, longest side at most 1600 px. A
    truncated or corrupt file is 415 `unsupported_media_type`, like any other file that does not decode as
    one of the three formats.

    An archived product's images cannot change (409 `invalid_state`, as for PATCH); drafts, published and
    sold products take images. Images sharing a `display_order` are ordered by id.
    """
    product = _parse_id(product_id, "product")
    # Cheap refusals first, without a lock: no decoding for a product that cannot take the image anyway.
    await _product_status(session, product, lock=False)
    _refuse_if_full((await _image_count_and_last_order(session, product))[0])

    data = await file.read(MAX_UPLOAD_BYTES + 1)
    try:
        image = await services.images.normalise(principal.tenant_id, data)
    except ImageRejected as rejected:
        code_status = 413 if isinstance(rejected, ImageTooLarge) else 415
        raise ProblemError(code_status, rejected.code, rejected.detail) from None

    # The file before the row: a committed row must always have its file.
    key = product_image_key(principal.tenant_id, product)
    await asyncio.to_thread(storage.put, key, image.data, image.content_type)
    try:
        # The row lock serialises concurrent uploads to one product, so the count cannot be raced past 20.
        await _product_status(session, product, lock=True)
        count, last_order = await _image_count_and_last_order(session, product)
        _refuse_if_full(count)
        row = ProductImage(
            product_id=product,
            storage_key=key,
            display_order=_next_order(last_order) if display_order is None else display_order,
            width=image.width,
            height=image.height,
            content_sha256=image.sha256,
        )
        session.add(row)
        await session.flush()
    except Exception:
        # Nothing was committed: the file would be a stray, so remove it now rather than leave it.
        await asyncio.to_thread(_remove_file, storage, key)
        raise
    return image_out(services.settings, row)


@router.delete(
    "/api/products/{product_id}/images/{image_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={
        404: {"description": "No such product or no such image of that product: `not_found`"},
        409: {"description": "`invalid_state`: the product is archived"},
    },
)
async def delete_product_image(
    product_id: str,
    image_id: str,
    session: TenantSession,
    storage: Storage,
    background: BackgroundTasks,
) -> Response:
    """Remove an image from a product; its file is deleted after the commit, best effort."""
    product = _parse_id(product_id, "product")
    image = _parse_id(image_id, "image")
    await _product_status(session, product, lock=False)
    key = await session.scalar(
        delete(ProductImage)
        .where(ProductImage.id == image, ProductImage.product_id == product)
        .returning(ProductImage.storage_key)
    )
    if key is None:
        raise _not_found("image")
    # Background tasks run once the response is sent, i.e. after the unit of work committed the delete;
    # were the commit to fail, the file must stay because the row still points at it.
    background.add_task(_remove_file, storage, key)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _forbidden() -> ProblemError:
    return ProblemError(403, "invalid_signature", "The media URL is invalid or has expired.")


async def _image_is_live(services: GatewayServices, key: str) -> bool:
    """True while the image's row exists and its product is not deleted: a signature outlives neither."""
    owner = _KEY_OWNER.match(key)
    if owner is None:
        return False
    tenant_id, product_id = (parse_path_id(part) for part in owner.groups())
    if tenant_id is None or product_id is None:
        return False
    async with services.db.session_factory() as session, session.begin():
        await scope_to_tenant(session, tenant_schema(services.settings.tenant_schema_prefix, tenant_id))
        found = await session.scalar(
            select(ProductImage.id)
            .join(Product, Product.id == ProductImage.product_id)
            .where(
                ProductImage.storage_key == key,
                Product.id == product_id,
                Product.deleted_at.is_(None),
            )
        )
    return found is not None


# HEAD answers like GET (some fetchers probe first); kept out of the schema: one operation per function.
@media_router.head("/media/{key:path}", response_class=Response, include_in_schema=False)
@media_router.get(
    "/media/{key:path}",
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {}}, "description": "The stored JPEG"},
        403: {"description": "`invalid_signature`: a signature that is not ours, or expired"},
        404: {"description": "Signed, but the image was deleted since"},
    },
)
async def get_media(
    key: str,
    storage: Storage,
    services: Services,
    expires: str | None = None,
    signature: str | None = None,
) -> Response:
    """Serve a stored image to whoever holds a valid signed URL; no login (marketplaces fetch these)."""
    # Missing or malformed parameters are the same 403 as a wrong signature: no hint for guessers.
    # (hmac.compare_digest also raises on non-ASCII text, hence the shape check before it.)
    if expires is None or signature is None or not _EXPIRES.fullmatch(expires):
        raise _forbidden()
    if not _SIGNATURE.fullmatch(signature) or not any(
        verify_media_signature(secret, key, int(expires), signature)
        for secret in media_verification_secrets(services.settings)
    ):
        raise _forbidden()
    if not await _image_is_live(services, key):
        raise _not_found("image")
    try:
        data = await asyncio.to_thread(storage.get, check_key(key))
    except InvalidMediaKey:
        raise _forbidden() from None
    except MediaNotFound:
        raise _not_found("image") from None
    max_age = max(0, min(_MEDIA_CACHE_SECONDS, int(expires) - int(time.time())))
    return Response(
        content=data,
        media_type="image/jpeg",
        headers={"Cache-Control": f"private, max-age={max_age}"},
    )
