"""The listing-text rules: each one caught in French and English, and ordinary descriptions let through."""

from __future__ import annotations

from decimal import Decimal

import pytest

from domain.catalogue import PlatformMappings, ProductSnapshot
from domain.mapping.common import PolicyViolation
from domain.mapping.vinted import map_to_vinted_item
from domain.text_policy import check_listing_text, find_breaches

BREACHES = [
    # other_marketplace
    ("other_marketplace", "Aussi dispo sur Leboncoin, faites vite.", "vinted"),
    ("other_marketplace", "Vendu aussi sur eBay moins cher.", "vinted"),
    ("other_marketplace", "Also listed on Depop and Vestiaire Collective.", "ebay"),
    ("other_marketplace", "Check my Vinted shop for more.", "etsy"),
    ("other_marketplace", "Retrouvez-moi sur le bon coin.", "etsy"),
    ("other_marketplace", "Available on Facebook Marketplace too.", "vinted"),
    # price_in_text
    ("price_in_text", "Payée 80 € en boutique.", "vinted"),
    ("price_in_text", "Prix ferme : 25, pas de négociation.", "vinted"),
    ("price_in_text", "Je la laisse à 15 euros.", "ebay"),
    ("price_in_text", "Retail price was $120.", "ebay"),
    ("price_in_text", "Bought for £45 last year.", "etsy"),
    ("price_in_text", "Asking 30 EUR or best offer.", "etsy"),
    # phone_number
    ("phone_number", "Appelez-moi au 06 12 34 56 78.", "vinted"),
    ("phone_number", "Mon numéro : +33 6 12 34 56 78", "vinted"),
    ("phone_number", "Texto au 0612345678 pour plus de photos.", "ebay"),
    ("phone_number", "Call me on 07700 900123.", "ebay"),
    ("phone_number", "WhatsApp +44 7700 900123 for offers.", "etsy"),
    ("phone_number", "Phone (555) 123-4567 after 6pm.", "etsy"),
    # email_address
    ("email_address", "Écrivez-moi : marie.dupont@gmail.com", "vinted"),
    ("email_address", "Contact : jean (at) hotmail.fr", "vinted"),
    ("email_address", "Email me at sales@vintage-shop.co.uk", "ebay"),
    ("email_address", "my address is anna [at] yahoo dot com", "etsy"),
    ("email_address", "Contact : paul arobase orange.fr", "etsy"),
    # link
    ("link", "Plus de photos sur https://photos.example.org/robe", "vinted"),
    ("link", "Voir ma boutique www.maboutique-vintage.fr", "vinted"),
    ("link", "More pictures at http://bit.ly/3xYz", "ebay"),
    ("link", "Visit shopvintage.com for the full range.", "etsy"),
    ("link", "Toute ma collection sur monsite.shop/collection", "ebay"),
]


@pytest.mark.parametrize(("rule", "text", "platform"), BREACHES)
def test_each_rule_is_caught_in_the_description(rule: str, text: str, platform: str) -> None:
    breaches = find_breaches("Robe Zara noire", text, platform)
    assert rule in {breach.rule for breach in breaches}, breaches
    with pytest.raises(PolicyViolation) as caught:
        check_listing_text("Robe Zara noire", text, platform)
    assert caught.value.code == "policy_violation"
    assert caught.value.rule in {breach.rule for breach in breaches}
    assert caught.value.rule in str(caught.value)


@pytest.mark.parametrize(
    ("title", "platform"),
    [("Jean Levi's 501 - 06 12 34 56 78", "vinted"), ("Nike Air Max 90 trainers, see my eBay shop", "etsy")],
)
def test_the_title_is_checked_too(title: str, platform: str) -> None:
    breaches = find_breaches(title, "Très bon état.", platform)
    assert breaches and breaches[0].field == "title"


def test_a_title_over_the_platform_limit_is_refused() -> None:
    title = "Robe longue Zara fleurie " * 4  # 100 characters
    assert find_breaches(title[:80], "", "ebay") == []
    assert [breach.rule for breach in find_breaches(title[:81], "", "ebay")] == ["title_length"]
    assert find_breaches(title[:100], "", "vinted") == []
    assert find_breaches(title[:81], "", None) == []  # no platform: no length rule


def test_naming_the_marketplace_the_listing_is_on_is_fine() -> None:
    assert find_breaches("Robe Zara", "Vendue uniquement sur Vinted.", "vinted") == []
    assert [
        breach.rule for breach in find_breaches("Robe Zara", "Vendue uniquement sur Vinted.", "ebay")
    ] == ["other_marketplace"]


ORDINARY = [
    "Robe Zara noire, taille M, portée deux fois. Très bon état.",
    "Jean Levi's 501 W32 L34, coupe droite, délavage clair.",
    "Pull en laine mérinos, très doux, aucune bouloche.",
    "Veste en jean oversize des années 90, boutons métalliques.",
    "Baskets Nike Air Max 90 pointure 42, semelles propres.",
    "Chemise à carreaux 100% coton, manches longues.",
    "Sac à main en cuir marron, bandoulière réglable.",
    "Manteau long en laine, doublure intérieure, deux poches.",
    "Jupe plissée mi-longue, taille élastique, motif fleuri.",
    "T-shirt blanc basique, col rond, coupe ajustée.",
    "Mesures à plat : aisselle à aisselle 52 cm, longueur 70 cm.",
    "Tour de taille 38 cm, longueur de jambe 78 cm.",
    "Lot de 2 t-shirts taille 8 ans, très bon état.",
    "Bottines en daim taille 38, talon de 5 cm.",
    "Envoi rapide et soigné, je reste disponible pour vos questions.",
    "Petite tache au niveau de la manche gauche, visible en photo 4.",
    "Pièce vintage des années 80, fabriquée en France.",
    "Robe de soirée en satin, fermeture éclair au dos.",
    "Blazer cintré, épaulettes légères, entièrement doublé.",
    "Écharpe en cachemire, 180 x 30 cm, franges aux extrémités.",
    "Short en jean taille haute, ourlet effiloché.",
    "Combinaison fluide à fines bretelles, idéale pour l'été.",
    "Doudoune légère, se range dans sa pochette.",
    "Montre acier, bracelet cuir, pile changée en 2024.",
    "Casquette ajustable, logo brodé, portée une saison.",
    "Black Zara midi dress, size M, worn twice. Very good condition.",
    "Levi's 501 jeans W32 L34, straight fit, light wash.",
    "Merino wool jumper, very soft, no pilling.",
    "Oversized 90s denim jacket with metal buttons.",
    "Nike Air Max 90 trainers, EU 42, clean soles.",
    "Checked shirt, 100% cotton, long sleeves.",
    "Brown leather handbag with an adjustable strap.",
    "Long wool coat, fully lined, two pockets.",
    "Pleated midi skirt with an elastic waist and floral print.",
    "Plain white crew-neck T-shirt, fitted cut.",
    "Measurements laid flat: pit to pit 52 cm, length 70 cm.",
    "Waist 38 cm, inside leg 78 cm.",
    "Bundle of 2 T-shirts, age 8, very good condition.",
    "Suede ankle boots, size 38, 5 cm heel.",
    "Fast and careful shipping, happy to answer any question.",
    "Small mark on the left sleeve, shown in photo 4.",
    "Vintage 1980s piece, made in Italy.",
    "Satin evening dress with a back zip.",
    "Tailored blazer, light shoulder pads, fully lined.",
    "Cashmere scarf, 180 x 30 cm, fringed ends.",
    "High-waisted denim shorts with a frayed hem.",
    "Flowing jumpsuit with thin straps, perfect for summer.",
    "Lightweight puffer that packs into its own pouch.",
    "Steel watch, leather strap, battery replaced in 2024.",
    "Adjustable cap with embroidered logo, worn one season.",
]


def test_fifty_ordinary_descriptions_pass() -> None:
    assert len(ORDINARY) == 50
    for text in ORDINARY:
        for platform in ("vinted", "ebay", "etsy"):
            assert find_breaches("Robe Zara noire taille M", text, platform) == [], text


def test_a_seller_written_description_is_checked_when_the_listing_is_mapped() -> None:
    product = ProductSnapshot(
        id=1,
        title="Robe Zara",
        description="Très bon état. Dispo aussi sur Leboncoin.",
        price=Decimal("20.00"),
        image_urls=("https://img.test/1.jpg",),
    )
    with pytest.raises(PolicyViolation) as caught:
        map_to_vinted_item(product, PlatformMappings())
    assert caught.value.rule == "other_marketplace" and caught.value.platform == "vinted"
