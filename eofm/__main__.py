import sys

from eofm.cli import main

sys.exit(main())
