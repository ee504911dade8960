"""``python -m substratus`` runs the CLI."""

from substratus.cli import main

if __name__ == "__main__":
    main()
