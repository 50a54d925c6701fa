"""``python -m devcloud ...``"""

from devcloud.cli import main

main()
