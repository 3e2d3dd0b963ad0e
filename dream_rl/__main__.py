"""``python -m dream_rl ...`` is the ``dream-rl`` command line."""

from dream_rl.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
