"""Command line: argument parsing, logging set-up and exit codes only."""
