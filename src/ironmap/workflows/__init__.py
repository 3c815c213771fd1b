"""The only code that knows the order of steps."""
