import sys

from include.stack.cli import main

sys.exit(main())
