"""Product images over HTTP: upload checks, limits, ordering, deletion, signed public URLs, tenancy."""

from __future__ import annotations

import asyncio
import io
import struct
import time
import uuid
import zlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from PIL import Image

from ops.adapters.media_urls import media_signing_secret, signed_media_url
from ops.config.settings import Settings, to_asyncpg_url
from persistence.media_storage import LocalMediaStorage
from tests.support import assert_problem, bearer, register

GPS_IFD = 0x8825


@pytest.fixture
async def media_app(app: FastAPI) -> FastAPI:
    """The app, which serves the public media router itself."""
    return app


@pytest.fixture
async def http(media_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=media_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.fixture
async def db(migrated: Settings) -> AsyncIterator[asyncpg.Connection]:
    dsn = to_asyncpg_url(migrated.async_database_url).replace("postgresql+asyncpg://", "postgresql://", 1)
    connection = await asyncpg.connect(dsn)
    try:
        yield connection
    finally:
        await connection.close()


class Tenant:
    def __init__(self, body: dict[str, Any], schema: str) -> None:
        self.headers = bearer(body)
        self.tenant_id: int = body["user"]["tenant_id"]
        self.schema = schema


async def new_tenant(http: httpx.AsyncClient, settings: Settings) -> Tenant:
    body = await register(http)
    return Tenant(body, f"{settings.tenant_schema_prefix}{body['user']['tenant_id']}")


async def create_product(http: httpx.AsyncClient, db: asyncpg.Connection, tenant: Tenant) -> int:
    """Create a product through the API, or with SQL while the products routes are not there yet."""
    response = await http.post(
        "/api/products", json={"title": "Denim jacket", "price": "10.00"}, headers=tenant.headers
    )
    if response.status_code not in (404, 405):
        assert response.status_code == 201, response.text
        product_id: int = response.json()["id"]
        return product_id
    product_id = await db.fetchval(
        f'INSERT INTO "{tenant.schema}".products (sku, title, price) VALUES ($1, $2, 10.00) RETURNING id',
        f"SKU-{uuid.uuid4().hex[:12]}",
        "Denim jacket",
    )
    return product_id


def encode(image: Image.Image, image_format: str, **params: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, format=image_format, **params)
    return out.getvalue()


def small_jpeg(colour: str = "teal", size: tuple[int, int] = (64, 48)) -> bytes:
    return encode(Image.new("RGB", size, colour), "JPEG")


async def upload(
    http: httpx.AsyncClient,
    tenant: Tenant,
    product_id: int | str,
    data: bytes,
    *,
    filename: str = "photo.jpg",
    content_type: str = "image/jpeg",
    fields: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return await http.post(
        f"/api/products/{product_id}/images",
        files={"file": (filename, data, content_type)},
        data=fields or {},
        headers={**tenant.headers, **(headers or {})},
    )


async def fetch_media(http: httpx.AsyncClient, url: str) -> httpx.Response:
    """GET a signed URL (built on PUBLIC_BASE_URL) from the test app, without any credentials."""
    parts = urlsplit(url)
    return await http.get(f"{parts.path}?{parts.query}")


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.mark.parametrize(
    ("image_format", "filename", "content_type"),
    [("JPEG", "a.jpg", "image/jpeg"), ("PNG", "a.png", "image/png"), ("WEBP", "a.webp", "image/webp")],
)
async def test_upload_accepts_jpeg_png_and_webp(
    http: httpx.AsyncClient,
    db: asyncpg.Connection,
    migrated: Settings,
    image_format: str,
    filename: str,
    content_type: str,
) -> None:
    tenant = await new_tenant(http, migrated)
    product_id = await create_product(http, db, tenant)
    data = encode(Image.new("RGB", (300, 200), "purple"), image_format)

    response = await upload(http, tenant, product_id, data, filename=filename, content_type=content_type)

    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) >= {"id", "url", "display_order", "width", "height", "created_at"}
    assert (body["width"], body["height"]) == (300, 200)
    assert body["display_order"] == 0
    assert body["created_at"].endswith(("Z", "+00:00"))
    served = await fetch_media(http, body["url"])
    assert served.status_code == 200
    assert served.headers["content-type"] == "image/jpeg"
    assert decoded(served.content).format == "JPEG"


@pytest.mark.parametrize(
    ("data", "filename", "content_type"),
    [
        pytest.param(b"hello, I am a text file\n" * 50, "photo.jpg", "image/jpeg", id="text-named-jpg"),
        pytest.param(encode(Image.new("RGB", (40, 40), "red"), "GIF"), "a.gif", "image/gif", id="gif"),
        pytest.param(
            encode(Image.new("RGB", (40, 40), "red"), "GIF"), "a.jpg", "image/jpeg", id="gif-named-jpg"
        ),
    ],
)
async def test_upload_refuses_what_is_not_jpeg_png_or_webp(
    http: httpx.AsyncClient,
    db: asyncpg.Connection,
    migrated: Settings,
    data: bytes,
    filename: str,
    content_type: str,
) -> None:
    tenant = await new_tenant(http, migrated)
    product_id = await create_product(http, db, tenant)

    response = await upload(http, tenant, product_id, data, filename=filename, content_type=content_type)

    assert_problem(response, 415, "unsupported_media_type")
    assert await db.fetchval(f'SELECT count(*) FROM "{tenant.schema}".product_images') == 0


async def test_upload_refuses_a_truncated_jpeg_as_unsupported(
    http: httpx.AsyncClient, db: asyncpg.Connection, migrated: Settings
) -> None:
    tenant = await new_tenant(http, migrated)
    product_id = await create_product(http, db, tenant)
    whole = encode(Image.effect_noise((400, 300), 60).convert("RGB"), "JPEG", quality=95)

    response = await upload(http, tenant, product_id, whole[: len(whole) // 2])

    assert_problem(response, 415, "unsupported_media_type")


async def test_upload_over_ten_megabytes_is_too_large(
    http: httpx.AsyncClient, db: asyncpg.Connection, migrated: Settings
) -> None:
    tenant = await new_tenant(http, migrated)
    product_id = await create_product(http, db, tenant)
    # Over our 10 MB but under the 11 MB multipart body limit: the image check answers, not the middleware.
    oversized = small_jpeg() + b"\0" * (10 * 1024 * 1024)

    response = await upload(http, tenant, product_id, oversized)

    assert_problem(response, 413, "too_large")


async def test_upload_of_a_decompression_bomb_is_refused_quickly(
    http: httpx.AsyncClient, db: asyncpg.Connection, migrated: Settings
) -> None:
    tenant = await new_tenant(http, migrated)
    product_id = await create_product(http, db, tenant)
    bomb = encode(Image.new("1", (20_000, 20_000)), "PNG")  # 400 megapixels, a few tens of kB

    started = time.perf_counter()
    response = await upload(http, tenant, product_id, bomb, filename="bomb.png", content_type="image/png")

    assert_problem(response, 413, "too_large")
    assert time.perf_counter() - started < 2


async def test_stored_image_has_no_exif_or_gps_and_is_upright(
    http: httpx.AsyncClient, db: asyncpg.Connection, migrated: Settings
) -> None:
    tenant = await new_tenant(http, migrated)
    product_id = await create_product(http, db, tenant)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: shown 90° clockwise
    exif[0x010F] = "PhoneMaker"
    exif[GPS_IFD] = {1: "N", 2: (48.0, 51.0, 29.0), 3: "E", 4: (2.0, 17.0, 40.0)}
    upload_bytes = encode(Image.new("RGB", (400, 200), "olive"), "JPEG", exif=exif)
    assert decoded(upload_bytes).getexif().get_ifd(GPS_IFD)

    response = await upload(http, tenant, product_id, upload_bytes)

    assert response.status_code == 201, response.text
    assert (response.json()["width"], response.json()["height"]) == (200, 400)
    stored = decoded((await fetch_media(http, response.json()["url"])).content)
    assert stored.size == (200, 400)
    assert len(stored.getexif()) == 0
    assert "exif" not in stored.info


async def test_longest_side_is_normalised_to_1600(
    http: httpx.AsyncClient, db: asyncpg.Connection, migrated: Settings
) -> None:
    tenant = await new_tenant(http, migrated)
    product_id = await create_product(http, db, tenant)

    response = await upload(http, tenant, product_id, small_jpeg(size=(3200, 1000)))

    assert response.status_code == 201, response.text
    assert (response.json()["width"], response.json()["height"]) == (1600, 500)
    stored = decoded((await fetch_media(http, response.json()["url"])).content)
    assert stored.size == (1600, 500)
    row = await db.fetchrow(
        f'SELECT width, height, content_sha256 FROM "{tenant.schema}".product_images WHERE id = $1',
        response.json()["id"],
    )
    assert (row["width"], row["height"]) == (1600, 500)
    assert len(row["content_sha256"]) == 64


async def test_a_product_takes_at_most_twenty_images(
    http: httpx.AsyncClient, db: asyncpg.Connection, migrated: Settings
) -> None:
    tenant = await new_tenant(http, migrated)
    product_id = await create_product(http, db, tenant)
    for _ in range(20):
        assert (await upload(http, tenant, product_id, small_jpeg())).status_code == 201

    response = await upload(http, tenant, product_id, small_jpeg())

    assert_problem(response, 409, "too_many_images")
    assert await db.fetchval(f'SELECT count(*) FROM "{tenant.schema}".product_images') == 20


async def test_concurrent_uploads_cannot_pass_twenty(
    http: httpx.AsyncClient, db: asyncpg.Connection, migrated: Settings
) -> None:
    tenant = await new_tenant(http, migrated)
    product_id = await create_product(http, db, tenant)
    for _ in range(16):
        assert (await upload(http, tenant, product_id, small_jpeg())).status_code == 201

    responses = await asyncio.gather(*(upload(http, tenant, product_id, small_jpeg()) for _ in range(8)))

    assert sorted(response.status_code for response in responses) == [201] * 4 + [409] * 4
    assert await db.fetchval(f'SELECT count(*) FROM "{tenant.schema}".product_images') == 20
    # The refused uploads' files were removed: only the 20 stored images remain on disk.
    product_dir = LocalMediaStorage(migrated.media_root).root / f"t{tenant.tenant_id}" / f"p{product_id}"
    assert len(list(product_dir.iterdir())) == 20


async def test_display_order_defaults_to_after_the_last(
    http: httpx.AsyncClient, db: asyncpg.Connection, migrated: Settings
) -> None:
    tenant = await new_tenant(http, migrated)
    product_id = await create_product(http, db, tenant)

    first = await upload(http, tenant, product_id, small_jpeg("red"))
    second = await upload(http, tenant, product_id, small_jpeg("green"))
    front = await upload(http, tenant, product_id, small_jpeg("blue"), fields={"display_order": "0"})
    later = await upload(http, tenant, product_id, small_jpeg("gray"), fields={"display_order": "10"})
    after = await upload(http, tenant, product_id, small_jpeg("white"))

    assert [r.json()["display_order"] for r in (first, second, front, later, after)] == [0, 1, 0, 10, 11]
    ordered = await db.fetch(
        f'SELECT id FROM "{tenant.schema}".product_images WHERE product_id = $1 ORDER BY display_order, id',
        product_id,
    )
    assert [row["id"] for row in ordered] == [r.json()["id"] for r in (first, front, second, later, after)]


@pytest.mark.parametrize("display_order", ["-1", "first", "1.5"])
async def test_a_bad_display_order_is_a_validation_error(
    http: httpx.AsyncClient, db: asyncpg.Connection, migrated: Settings, display_order: str
) -> None:
    tenant = await new_tenant(http, migrated)
    product_id = await create_product(http, db, tenant)

    response = await upload(http, tenant, product_id, small_jpeg(), fields={"display_order": display_order})

    assert_problem(response, 422, "validation_error")


async def test_a_missing_file_field_is_a_validation_error(
    http: httpx.AsyncClient, db: asyncpg.Connection, migrated: Settings
) -> None:
    tenant = await new_tenant(http, migrated)
    product_id = await create_product(http, db, tenant)

    response = await http.post(
        f"/api/products/{product_id}/images",
        files={"photo": ("a.jpg", small_jpeg(), "image/jpeg")},
        headers=tenant.headers,
    )

    body = assert_problem(response, 422, "validation_error")
    assert any(error["loc"][-1] == "file" for error in body["errors"])


async def test_upload_needs_authentication(
    http: httpx.AsyncClient, db: asyncpg.Connection, migrated: Settings
) -> None:
    tenant = await new_tenant(http, migrated)
    product_id = await create_product(http, db, tenant)

    response = await http.post(
        f"/api/products/{product_id}/images", files={"file": ("a.jpg", small_jpeg(), "image/jpeg")}
    )

    assert_problem(response, 401, "not_authenticated")


@pytest.mark.parametrize("product_id", ["999999", "abc", "0", "-1", "99999999999999999999", "1.0"])
async def test_upload_to_a_missing_product_or_malformed_id_is_not_found(
    http: httpx.AsyncClient, migrated: Settings, product_id: str
) -> None:
    tenant = await new_tenant(http, migrated)

    response = await upload(http, tenant, product_id, small_jpeg())

    assert_problem(response, 404, "not_found")


async def test_upload_to_a_soft_deleted_product_is_not_found(
    http: httpx.AsyncClient, db: asyncpg.Connection, migrated: Settings
) -> None:
    tenant = await new_tenant(http, migrated)
    product_id = await create_product(http, db, tenant)
    await db.execute(f'UPDATE "{tenant.schema}".products SET deleted_at = now() WHERE id = $1', product_id)

    response = await upload(http, tenant, product_id, small_jpeg())

    assert_problem(response, 404, "not_found")


async def test_an_archived_product_takes_no_new_images(
    http: httpx.AsyncClient, db: asyncpg.Connection, migrated: Settings
) -> None:
    tenant = await new_tenant(http, migrated)
    product_id = await create_product(http, db, tenant)
    image = (await upload(http, tenant, product_id, small_jpeg())).json()
    await db.execute(f"UPDATE \"{tenant.schema}\".products SET status = 'archived' WHERE id = $1", product_id)

    added = await upload(http, tenant, product_id, small_jpeg())
    removed = await http.delete(f"/api/products/{product_id}/images/{image['id']}", headers=tenant.headers)

    assert_problem(added, 409, "invalid_state")
    assert_problem(removed, 409, "invalid_state")


async def test_delete_removes_the_image_and_its_file(
    http: httpx.AsyncClient, db: asyncpg.Connection, migrated: Settings
) -> None:
    tenant = await new_tenant(http, migrated)
    product_id = await create_product(http, db, tenant)
    image = (await upload(http, tenant, product_id, small_jpeg())).json()
    key = await db.fetchval(
        f'SELECT storage_key FROM "{tenant.schema}".product_images WHERE id = $1', image["id"]
    )
    storage = LocalMediaStorage(migrated.media_root)
    assert storage.exists(key)

    deleted = await http.delete(f"/api/products/{product_id}/images/{image['id']}", headers=tenant.headers)
    again = await http.delete(f"/api/products/{product_id}/images/{image['id']}", headers=tenant.headers)

    assert deleted.status_code == 204
    assert deleted.content == b""
    assert_problem(again, 404, "not_found")
    assert not storage.exists(key)
    assert_problem(await fetch_media(http, image["url"]), 404, "not_found")


async def test_delete_of_another_products_image_is_not_found(
    http: httpx.AsyncClient, db: asyncpg.Connection, migrated: Settings
) -> None:
    tenant = await new_tenant(http, migrated)
    product_id = await create_product(http, db, tenant)
    other_product = await create_product(http, db, tenant)
    image = (await upload(http, tenant, product_id, small_jpeg())).json()

    response = await http.delete(
        f"/api/products/{other_product}/images/{image['id']}", headers=tenant.headers
    )
    malformed = await http.delete(f"/api/products/{product_id}/images/x1", headers=tenant.headers)

    assert_problem(response, 404, "not_found")
    assert_problem(malformed, 404, "not_found")
    assert await db.fetchval(f'SELECT count(*) FROM "{tenant.schema}".product_images') == 1


async def test_another_tenant_cannot_upload_to_or_delete_from_a_product(
    http: httpx.AsyncClient, db: asyncpg.Connection, migrated: Settings
) -> None:
    owner = await new_tenant(http, migrated)
    intruder = await new_tenant(http, migrated)
    product_id = await create_product(http, db, owner)
    image = (await upload(http, owner, product_id, small_jpeg())).json()

    uploaded = await upload(http, intruder, product_id, small_jpeg())
    deleted = await http.delete(f"/api/products/{product_id}/images/{image['id']}", headers=intruder.headers)

    assert_problem(uploaded, 404, "not_found")
    assert_problem(deleted, 404, "not_found")
    assert await db.fetchval(f'SELECT count(*) FROM "{owner.schema}".product_images') == 1
    assert (await fetch_media(http, image["url"])).status_code == 200


async def test_signed_url_is_public_but_expires_and_cannot_be_forged(
    http: httpx.AsyncClient, db: asyncpg.Connection, migrated: Settings
) -> None:
    tenant = await new_tenant(http, migrated)
    product_id = await create_product(http, db, tenant)
    image = (await upload(http, tenant, product_id, small_jpeg())).json()
    key = await db.fetchval(
        f'SELECT storage_key FROM "{tenant.schema}".product_images WHERE id = $1', image["id"]
    )
    secret = media_signing_secret(migrated)
    parts = urlsplit(image["url"])
    query = dict(pair.split("=", 1) for pair in parts.query.split("&"))
    other_key = f"t{tenant.tenant_id}/p{product_id}/{uuid.uuid4().hex}.jpg"
    expired = signed_media_url(migrated.public_base_url, secret, key, now=time.time() - 8 * 24 * 3600)
    tampered_signature = query["signature"][:-1] + ("0" if query["signature"][-1] != "0" else "1")

    fresh = await fetch_media(http, image["url"])  # no Authorization header at all

    assert fresh.status_code == 200
    assert fresh.headers["content-type"] == "image/jpeg"
    assert "private" in fresh.headers["cache-control"]
    assert (await http.head(f"{parts.path}?{parts.query}")).status_code == 200
    refused = [
        await fetch_media(http, expired),
        await http.get(f"{parts.path}?expires={query['expires']}&signature={tampered_signature}"),
        await http.get(f"/media/{other_key}?expires={query['expires']}&signature={query['signature']}"),
        await http.get(f"{parts.path}?expires={int(query['expires']) + 1}&signature={query['signature']}"),
        await http.get(f"{parts.path}?expires={query['expires']}"),
        await http.get(parts.path),
        await http.get(f"{parts.path}?expires=soon&signature={query['signature']}"),
        await http.get(f"{parts.path}?expires={query['expires']}&signature=%C3%A9{query['signature'][2:]}"),
        await http.get(f"{parts.path}?expires={query['expires']}&signature={query['signature'].upper()}"),
        await http.get(
            f"/media/t1/%2e%2e/%2e%2e/etc/passwd?expires={query['expires']}&signature={query['signature']}"
        ),
    ]
    for response in refused:
        assert_problem(response, 403, "invalid_signature")


# A replayed (or refused) request never reaches FastAPI's handler, which is what closes the multipart
# form that the idempotency fingerprint parsed; its spooled temp file is only closed when collected.
# Fix belongs in UnitOfWorkRoute (`await request.close()` once the response is built); until then:
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_idempotent_replay_of_an_upload_returns_the_same_image(
    http: httpx.AsyncClient, db: asyncpg.Connection, migrated: Settings
) -> None:
    tenant = await new_tenant(http, migrated)
    product_id = await create_product(http, db, tenant)
    data = small_jpeg("maroon")
    key = {"Idempotency-Key": f"upload-{uuid.uuid4().hex}"}

    first = await upload(http, tenant, product_id, data, headers=key)
    replay = await upload(http, tenant, product_id, data, headers=key)
    different = await upload(http, tenant, product_id, small_jpeg("navy"), headers=key)

    assert first.status_code == replay.status_code == 201
    assert replay.json()["id"] == first.json()["id"]
    assert_problem(different, 422, "idempotency_key_reused")
    assert await db.fetchval(f'SELECT count(*) FROM "{tenant.schema}".product_images') == 1


async def test_openapi_documents_the_image_routes(http: httpx.AsyncClient) -> None:
    response = await http.get("/openapi.json")

    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "post" in paths["/api/products/{product_id}/images"]
    assert "delete" in paths["/api/products/{product_id}/images/{image_id}"]
    assert "get" in paths["/media/{key}"]


def sixteen_bit_png(width: int, height: int, colour_type: int) -> bytes:
    """A tiny PNG declaring a huge 16-bit image (one repeated row compresses to almost nothing)."""
    channels = {0: 1, 2: 3, 6: 4}[colour_type]

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    row = b"\0" + b"\x12\x34" * (width * channels)
    compressor = zlib.compressobj(9)
    pixels = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


async def test_a_small_file_declaring_too_many_decoded_bytes_is_too_large(
    http: httpx.AsyncClient, db: asyncpg.Connection, migrated: Settings
) -> None:
    tenant = await new_tenant(http, migrated)
    product_id = await create_product(http, db, tenant)
    data = sixteen_bit_png(6000, 6000, colour_type=6)  # 36 MP of 8 bytes: 288 MB decoded
    assert len(data) < 1_000_000
    response = await upload(http, tenant, product_id, data, filename="x.png", content_type="image/png")
    body = assert_problem(response, 413, "too_large")
    assert "decode" in body["detail"]


async def test_a_sixteen_bit_greyscale_png_under_the_caps_is_normalised(
    http: httpx.AsyncClient, db: asyncpg.Connection, migrated: Settings
) -> None:
    tenant = await new_tenant(http, migrated)
    product_id = await create_product(http, db, tenant)
    data = sixteen_bit_png(3000, 2000, colour_type=0)
    response = await upload(http, tenant, product_id, data, filename="x.png", content_type="image/png")
    assert response.status_code == 201, response.text
    assert (response.json()["width"], response.json()["height"]) == (1600, 1067)


async def test_signed_urls_die_with_their_product(
    http: httpx.AsyncClient, db: asyncpg.Connection, migrated: Settings
) -> None:
    tenant = await new_tenant(http, migrated)
    product_id = await create_product(http, db, tenant)
    image = (await upload(http, tenant, product_id, small_jpeg())).json()
    assert (await fetch_media(http, image["url"])).status_code == 200
    deleted = await http.delete(f"/api/products/{product_id}", headers=tenant.headers)
    assert deleted.status_code == 204, deleted.text
    assert_problem(await fetch_media(http, image["url"]), 404, "not_found")
