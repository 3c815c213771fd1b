"""Figures (data -> Figure) and HTML reports from templates."""
