"""The only package that opens, globs or names files."""
