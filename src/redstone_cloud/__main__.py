"""``python -m redstone_cloud`` is ``redstone-cloud``."""

import sys

from redstone_cloud.cli import main

sys.exit(main())
