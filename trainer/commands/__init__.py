"""One module per CLI subcommand: each has `configure(parser)` and `run(args) -> int`."""
