import sys

from tools.rpl.cli import main

sys.exit(main())
