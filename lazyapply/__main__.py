"""``python -m lazyapply``: the installed backends, and one kernel through each.

See :mod:`lazyapply._cli` for the options, or run ``python -m lazyapply --help``.
"""

from __future__ import annotations

import sys

from lazyapply._cli import main

if __name__ == "__main__":
    sys.exit(main())
