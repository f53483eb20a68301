"""`stoflow up --demo`: Stoflow at work in a minute, without a single manual step.

A demo reseller (on the `pro` plan: three marketplaces) is connected to the sandbox's eBay seller, Etsy shop
and a Vinted member whose tasks the reference plugin runs. The demo creates a sample product, publishes it
to all three, prints each listing as it goes live, makes a buyer purchase it on eBay in the sandbox, and
prints the other listings coming down with the sale's outcomes.
"""

from __future__ import annotations

import io
import time
import uuid
from typing import Any

import httpx
from PIL import Image

DEMO_PRODUCT = {
    "title": "Robe Zara bleue années 90",
    "description": "Robe d'été en coton bleu, très bon état, portée deux fois.",
    "price": "24.90",
    "category": "women_dresses",
    "condition": "very_good",
    "brand": "zara",
    "size": "m",
    "color": "blue",
    "decade": "1990s",
}
PLATFORMS = ["ebay", "etsy", "vinted"]


def _say(line: str) -> None:
    print(f"  [demo] {line}", flush=True)


def _photo() -> bytes:
    image = Image.new("RGB", (800, 1000), (52, 91, 160))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def connect_demo_marketplaces(http: httpx.Client, api: str, sandbox: str, headers: dict[str, str]) -> None:
    """Connect the sandbox's Etsy shop (eBay and Vinted are connected by `stoflow up` itself)."""
    shop = http.post(f"{sandbox}/_sandbox/etsy/accounts", json={}).json()
    etsy = {
        "shop_id": shop["shop_id"],
        "access_token": shop["access_token"],
        "refresh_token": shop["refresh_token"],
        "shipping_profile_id": 8001,
    }
    http.put(f"{api}/api/integrations/etsy", json=etsy, headers=headers).raise_for_status()


def _listings(http: httpx.Client, api: str, headers: dict[str, str], product_id: int) -> dict[str, str]:
    product = http.get(f"{api}/api/products/{product_id}", headers=headers).json()
    return {row["platform"]: row["status"] for row in product.get("listings", [])}


def _follow(
    http: httpx.Client,
    api: str,
    headers: dict[str, str],
    product_id: int,
    seen: dict[str, str],
    done: Any,
    timeout: float,
) -> dict[str, str]:
    """Print every listing change until `done(listings)` holds (or the timeout passes)."""
    deadline = time.monotonic() + timeout
    listings: dict[str, str] = {}
    while time.monotonic() < deadline:
        listings = _listings(http, api, headers, product_id)
        for platform, status in sorted(listings.items()):
            if seen.get(platform) != status:
                _say(f"{platform:6} listing {seen.get(platform, 'none')} -> {status}")
                seen[platform] = status
        if done(listings):
            return listings
        time.sleep(0.3)
    return listings


def run_demo(api: str, sandbox: str, headers: dict[str, str], *, timeout: float = 120.0) -> bool:
    """Create, publish everywhere, sell on eBay, watch the rest come down; True when it all happened."""
    with httpx.Client(timeout=15) as http:
        body = {**DEMO_PRODUCT, "sku": f"DEMO-{uuid.uuid4().hex[:8].upper()}"}
        product = http.post(f"{api}/api/products", json=body, headers=headers).json()
        http.post(
            f"{api}/api/products/{product['id']}/images",
            files={"file": ("robe.jpg", _photo(), "image/jpeg")},
            headers=headers,
        ).raise_for_status()
        _say(f"created product {product['id']} ({product['title']}, SKU {product['sku']})")
        published = http.post(
            f"{api}/api/products/{product['id']}/publications", json={"platforms": PLATFORMS}, headers=headers
        )
        if published.status_code != 202:
            _say(f"publishing was refused: {published.text}")
            return False
        _say("publishing to eBay, Etsy and Vinted (Vinted through the reference plugin)...")
        seen: dict[str, str] = {}
        listings = _follow(
            http,
            api,
            headers,
            product["id"],
            seen,
            lambda rows: all(rows.get(p) in ("live", "failed") for p in PLATFORMS),
            timeout,
        )
        if not all(listings.get(p) == "live" for p in PLATFORMS):
            _say(f"not every listing went live: {listings}")
            return False
        order = http.post(f"{sandbox}/_sandbox/ebay/orders", json={"sku": product["sku"]}).json()
        _say(f"a buyer bought it on eBay (order {order.get('orderId')}): taking the other listings down...")
        listings = _follow(
            http,
            api,
            headers,
            product["id"],
            seen,
            lambda rows: (
                rows.get("ebay") == "sold" and all(rows.get(p) == "delisted" for p in ("etsy", "vinted"))
            ),
            timeout,
        )
        sales = http.get(f"{api}/api/sales", params={"product_id": product["id"]}, headers=headers).json()
        for sale in sales.get("items", []):
            _say(f"sale {sale['order_id']} on {sale['platform']} (seen by {sale['source']})")
            for outcome in sale["outcomes"]:
                _say(f"  outcome: {outcome['platform']:6} {outcome['action']} {outcome['status']}")
        final = http.get(f"{api}/api/products/{product['id']}", headers=headers).json()
        _say(f"product {product['id']} is {final['status']}, stock {final['stock_quantity']}")
        return bool(final["status"] == "sold")
