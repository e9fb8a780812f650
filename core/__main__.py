"""``python -m colorkit ...`` runs the command line (torchrun launches it this way)."""

from colorkit.front.cli import main

if __name__ == "__main__":
    main()
