"""One module per command group; each has `register(subparsers, common)` and handlers taking a Context."""
