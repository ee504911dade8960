"""``python -m substratus`` runs the CLI; a Ctrl-C while it loads is one line, not a
traceback (``substratus.cli.main`` handles it from then on)."""

if __name__ == "__main__":
    try:
        from substratus.cli import main
    except KeyboardInterrupt:
        import sys

        print("\nInterrupted.", file=sys.stderr)
        sys.exit(130)
    main()
