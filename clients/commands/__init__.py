"""The `lrr` subcommands, one module each; every module has `register(subcommands)`."""
