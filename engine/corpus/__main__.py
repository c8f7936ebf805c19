"""python -m engine.corpus {build,verify,stats,demo,figure} ..."""
from .cli import main

raise SystemExit(main())
