import sys

from neurosolve.cli import main

sys.exit(main())
