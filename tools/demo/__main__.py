import sys

from tools.demo.story import main

sys.exit(main())
