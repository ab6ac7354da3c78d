"""moica-auth: citizen digital certificate (自然人憑證) login for Django portals.

The verification core (``signature``, ``certificate``, ``validation``, ``revocation``,
``identity``) has no dependency on Django views or models; the Django app (``backends``,
``views``, ``middleware``, ``models``) is built on top of it.
"""

__version__ = "0.1.0.dev0"
