"""Named regions and what is measured in them."""
