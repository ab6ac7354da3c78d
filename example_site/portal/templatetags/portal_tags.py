"""``{% zh_en "中文" "English" %}``: the demo's two-language text without a catalogue.

The portal's own pages are written in both languages inline (the library's messages
are translated through Django's catalogue in ``moica_auth/locale``). LocaleMiddleware
picks the language; ``set_language`` switches it.
"""

from __future__ import annotations

from django import template
from django.utils.translation import get_language

register = template.Library()


@register.simple_tag
def zh_en(zh: str, en: str) -> str:
    """``en`` when the active language is English, otherwise ``zh`` (zh-Hant first)."""
    return en if (get_language() or "").lower().startswith("en") else zh
