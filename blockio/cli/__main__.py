"""``python -m blockio.cli``: the same as the ``blockio`` command."""

import sys

from blockio.cli.main import main

sys.exit(main())
