import sys

from tools.galera.cli import main

sys.exit(main())
