"""The `moq` command line (click). Thin: parse, build a config, call one library function."""
