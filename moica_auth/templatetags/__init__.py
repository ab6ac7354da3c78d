"""Template tags of moica-auth: ``{% load moica_auth %}``."""
