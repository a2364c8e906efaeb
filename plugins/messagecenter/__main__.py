"""``python -m messagecenter``: the operator CLI."""

from __future__ import annotations

import sys

from messagecenter.cli import main

sys.exit(main())
