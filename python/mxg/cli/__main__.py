import sys

from mxg.cli import main

sys.exit(main())
