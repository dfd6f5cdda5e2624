"""`python -m authproxy` is the same as the `authproxy` command."""

from authproxy.cli.main import main

raise SystemExit(main())
