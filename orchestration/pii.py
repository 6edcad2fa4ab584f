"""Keyed hashing of direct identifiers, so raw phone numbers never enter the warehouse."""

from __future__ import annotations

import hashlib
import hmac
import re
from functools import lru_cache

_NON_DIGITS = re.compile(r"[\s\-()]")
# RE2 has no look-behind, so the boundary characters are captured and put back.
_EDGE = "(^|[^0-9A-Za-z])"
_EDGE_END = "([^0-9A-Za-z]|$)"
TEXT_PII_PATTERNS = (
    (_EDGE + r"(?:\+?86[ -]?)?1[3-9][0-9](?:[ -]?[0-9]{4}){2}" + _EDGE_END, r"\1<phone>\2"),
    (_EDGE + r"[1-9][0-9]{16}[0-9Xx]" + _EDGE_END, r"\1<id-number>\2"),
    (r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}", "<email>"),
)


def normalise_phone(raw: str) -> str:
    """One spelling per number: '+86 138-0013-8000' and '13800138000' must hash alike."""
    digits = _NON_DIGITS.sub("", raw.strip())
    for prefix in ("+86", "0086"):
        if digits.startswith(prefix) and len(digits) == len(prefix) + 11:
            return digits[len(prefix) :]
    if digits.startswith("86") and len(digits) == 13:
        return digits[2:]
    return digits


@lru_cache(maxsize=1_000_000)
def hash_phone(raw: str, salt: str) -> str:
    """HMAC-SHA-256 of the normalised number: joinable across sources, useless without the key."""
    return hmac.new(salt.encode(), normalise_phone(raw).encode(), hashlib.sha256).hexdigest()


def mask_pii_sql(expression: str) -> str:
    """SQL that masks phone numbers, ID-card numbers and e-mails in free text (quarantined raw records)."""
    for pattern, replacement in TEXT_PII_PATTERNS:
        expression = f"regexp_replace({expression}, '{pattern}', '{replacement}', 'g')"
    return expression
