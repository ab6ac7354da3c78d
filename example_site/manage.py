#!/usr/bin/env python
"""``python example_site/manage.py …`` from the repository root (or from this folder)."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> None:
    # Make ``example_site`` and ``moica_auth`` importable when run as a script.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_site.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
