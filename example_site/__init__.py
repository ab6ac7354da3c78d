"""The moica-auth example e-government portal (a demo: every key in it is a TEST key)."""
