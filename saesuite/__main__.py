import sys

from saesuite.cli import main

sys.exit(main())
