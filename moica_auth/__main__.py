"""``python -m moica_auth``: the admin command line (see docs/cli.md)."""

from moica_auth.cli import main

raise SystemExit(main())
