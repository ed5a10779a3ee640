"""``python -m connector.sim SCENARIO.toml``: see `connector.sim._cli`."""

import sys

from ._cli import main

sys.exit(main())
