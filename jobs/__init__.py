"""Ray job entrypoints: ``python -m jobs.<name>``. Thin: parse, configure, run, exit code."""
