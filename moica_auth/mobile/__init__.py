"""Login with the mobile citizen certificate (行動自然人憑證) through MOI's SP API.

* :mod:`~moica_auth.mobile.errors`: every refusal of the mobile path, one class each;
* :mod:`~moica_auth.mobile.checksum`: the AES-256-GCM ``sp_checksum`` / ``idp_checksum``;
* :mod:`~moica_auth.mobile.client`: the six SP API interfaces on ``requests``;
* :mod:`~moica_auth.mobile.settings`: ``MOICA_AUTH_MOBILE`` parsed once into a typed object;
* :mod:`~moica_auth.mobile.limits`: push abuse limits;
* :mod:`~moica_auth.mobile.source`: the mobile credential source of the login core.

This package ``__init__`` imports nothing heavy: :mod:`moica_auth.exceptions` imports
:mod:`~moica_auth.mobile.errors` so the error codes are registered everywhere.
"""
