"""`python -m steerlens.cli`."""

from . import main

raise SystemExit(main())
