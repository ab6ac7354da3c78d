"""What ``example_site.demo`` shares with the web views of the same process.

When the site runs under ``python -m example_site.demo`` the virtual card server lives
in this process, so the home page can switch the card in the reader. Under
``manage.py runserver`` it is ``None`` and the control is hidden.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from moica_auth.testing.virtual_card import VirtualCardServer
    from moica_auth.testing.virtual_sp import VirtualSpApi

__all__ = ["card_server", "sp_server"]

card_server: VirtualCardServer | None = None
#: The virtual SP API and phone page of the mobile citizen certificate (``make demo``).
sp_server: VirtualSpApi | None = None
