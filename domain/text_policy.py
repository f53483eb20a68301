"""What a listing's title and description may say: the rules marketplaces hide listings for.

Vinted hides a listing whose text sends buyers elsewhere (another marketplace, contact details, a
link) or names a price outside the price field; eBay and Etsy have the same rules. Every AI-written
text is checked before it is stored, and every description before a mapper publishes it.

| rule              | meaning                                                                     |
|-------------------|-----------------------------------------------------------------------------|
| title_length      | the title fits the platform's limit (Vinted 100, eBay 80, Etsy 140)         |
| other_marketplace | no marketplace other than the one listed on is named                        |
| price_in_text     | no price in the text: the price field is the only price                     |
| phone_number      | no phone number                                                             |
| email_address     | no e-mail address, written plainly or disguised ("jean [at] gmail.com")     |
| link              | no web address                                                              |

Breaches raise `PolicyViolation` (code `policy_violation`) naming the rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from domain.mapping.common import PolicyViolation

#: The longest title each marketplace takes (the mappers' TITLE_MAX; a unit test keeps them equal).
TITLE_LIMITS: dict[str, int] = {"vinted": 100, "ebay": 80, "etsy": 140}

#: Marketplace -> how sellers write its name. Naming the marketplace a listing is on is allowed.
MARKETPLACE_NAMES: dict[str, str] = {
    "vinted": r"vinted",
    "ebay": r"e[\s-]?bay",
    "etsy": r"etsy",
    "leboncoin": r"le\s?bon\s?coin",
    "depop": r"depop",
    "vestiaire collective": r"vestiaire\s+collective",
    "poshmark": r"poshmark",
    "grailed": r"grailed",
    "wallapop": r"wallapop",
    "facebook marketplace": r"(?:facebook|fb)\s+marketplace",
    "videdressing": r"vide\s?dressing",
    "label emmaus": r"label\s+emma[uü]s",
    "micolet": r"micolet",
    "mercari": r"mercari",
    "shpock": r"shpock",
    "rakuten": r"rakuten",
    "whatnot": r"whatnot",
}
_MARKETPLACE_PATTERNS: dict[str, re.Pattern[str]] = {
    name: re.compile(rf"(?<![\w]){pattern}(?![\w])", re.IGNORECASE)
    for name, pattern in MARKETPLACE_NAMES.items()
}

_CURRENCY = r"(?:€|\$|£|eur\b|euros?\b|usd\b|dollars?\b|gbp\b|livres?\s+sterling|pounds?\b|chf\b|pln\b|zł)"
_AMOUNT = r"\d{1,6}(?:[.,]\d{1,2})?"
_PRICE = re.compile(
    rf"(?:{_AMOUNT}\s?{_CURRENCY})|(?:(?:€|\$|£)\s?\d)"
    # "prix : 20", "price 35", "à 15 le lot": a number announced as the price, even without a currency.
    rf"|(?:\b(?:prix|price|tarif|asking)\b[^\d\n]{{0,12}}\d)",
    re.IGNORECASE,
)
# A phone number starts with +, 00, 0 or a bracketed area code, and holds 9 to 15 digits in small groups.
_PHONE_CANDIDATE = re.compile(r"(?<![\w+])(?:\+|\(|0)[\d\s.\-()/]{8,24}\d(?![\w])")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", re.UNICODE)
_DISGUISED_EMAIL = re.compile(
    r"[\w.+-]+\s*(?:\(at\)|\[at\]|\{at\}|\(arobase\)|\[arobase\]|\barobase\b|\bat\b)\s*"
    r"(?:gmail|hotmail|yahoo|outlook|icloud|live|orange|free|sfr|laposte|proton(?:mail)?|wanadoo|gmx)"
    r"(?:\s*(?:\.|\(dot\)|\[dot\]|\bdot\b|\bpoint\b)\s*[a-z]{2,4})?",
    re.IGNORECASE,
)
_TOP_LEVEL_DOMAINS = (
    "com|fr|net|org|io|co|uk|de|es|it|be|eu|ch|nl|shop|store|me|ly|gl|app|info|biz|site|online|page|link"
)
_LINK = re.compile(
    rf"(?:https?://|\bwww\.)\S+|\b[a-z0-9][a-z0-9-]*\.(?:{_TOP_LEVEL_DOMAINS})\b(?:/\S*)?",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class TextBreach:
    """One rule a text breaks, with the words that break it."""

    rule: str
    field: str
    excerpt: str


def find_breaches(title: str, description: str, platform: str | None) -> list[TextBreach]:
    """Every rule the title and description break for a listing on `platform` (None: any marketplace)."""
    breaches: list[TextBreach] = []
    limit = TITLE_LIMITS.get(platform or "")
    if limit is not None and len(title) > limit:
        breaches.append(TextBreach("title_length", "title", f"{len(title)} characters, over {limit}"))
    for field, text in (("title", title), ("description", description)):
        breaches.extend(_breaches_in(text, field, platform))
    return breaches


def check_listing_text(title: str, description: str, platform: str | None) -> None:
    """Raise PolicyViolation for the first rule the listing's text breaks."""
    breaches = find_breaches(title, description, platform)
    if breaches:
        first = breaches[0]
        raise PolicyViolation(
            first.rule,
            platform or "listing",
            f"the {first.field} {_explain(first)}",
            field=first.field,
        )


def _explain(breach: TextBreach) -> str:
    if breach.rule == "title_length":
        return f"is too long ({breach.excerpt})"
    what = {
        "other_marketplace": "names another marketplace",
        "price_in_text": "states a price (keep it in the price field)",
        "phone_number": "contains a phone number",
        "email_address": "contains an e-mail address",
        "link": "contains a link",
    }[breach.rule]
    return f"{what}: {breach.excerpt!r}"


def _breaches_in(text: str, field: str, platform: str | None) -> list[TextBreach]:
    found: list[TextBreach] = []
    for name, pattern in _MARKETPLACE_PATTERNS.items():
        if name == platform:
            continue
        match = pattern.search(text)
        if match:
            found.append(TextBreach("other_marketplace", field, match.group(0)))
            break
    # E-mails before links: "jean@mail.fr" is an address, not a web link.
    email = _EMAIL.search(text) or _DISGUISED_EMAIL.search(text)
    if email:
        found.append(TextBreach("email_address", field, email.group(0)))
    without_emails = _DISGUISED_EMAIL.sub(" ", _EMAIL.sub(" ", text))
    link = _LINK.search(without_emails)
    if link:
        found.append(TextBreach("link", field, link.group(0)))
    phone = _phone_number(without_emails)
    if phone:
        found.append(TextBreach("phone_number", field, phone))
    price = _PRICE.search(text)
    if price:
        found.append(TextBreach("price_in_text", field, price.group(0).strip()))
    return found


def _phone_number(text: str) -> str | None:
    for match in _PHONE_CANDIDATE.finditer(text):
        candidate = match.group(0).strip()
        digits = sum(character.isdigit() for character in candidate)
        # Small groups, or one run: "06 12 34 56 78", "+44 7700 900123", "0612345678".
        groups = [group for group in re.split(r"[^\d]+", candidate) if group]
        if 9 <= digits <= 15 and (len(groups) == 1 or max(len(group) for group in groups) <= 6):
            return candidate
    return None
