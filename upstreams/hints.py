"""Secret hints: how much of a secret a caller may see, one format for every source.

At most ``VISIBLE`` characters of the secret, then ``MARK``: ``abcd…``. A prefix that every
secret of a kind shares (the store's ``tg_``) reveals nothing and is shown in front, not
counted: ``tg_abcd…``. Enough to tell one's own tokens apart, too little to narrow a guess.
"""

from __future__ import annotations

VISIBLE = 4
MARK = "…"


def shown(secret_start: str, *, public_prefix: str = "") -> str:
    """The hint for a secret beginning with ``secret_start`` (which may be longer, or be a
    hint already: a hint made again from a hint is the same hint)."""
    visible = secret_start.removesuffix(MARK)[:VISIBLE]
    return f"{public_prefix}{visible}{MARK}"


__all__ = ["MARK", "VISIBLE", "shown"]
