"""Run the command line with ``python -m chimebot``."""

from chimebot.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
