"""Group statistics: tests, regression, age model, multicenter, tables."""
