import sys

from symtwin.cli import main

sys.exit(main())
