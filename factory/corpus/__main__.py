"""python -m factory.corpus {build,verify,stats,demo,figure} ..."""

from .cli import main

raise SystemExit(main())
