"""The portal shell: home page, layout, language switch and the demo card control."""
