"""`python -m authproxy` is the same as the `authproxy` command."""

from .cli import main

raise SystemExit(main())
