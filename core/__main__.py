"""``python -m core`` — the FaceLab command line."""

import sys

from core.cli import main

sys.exit(main())
