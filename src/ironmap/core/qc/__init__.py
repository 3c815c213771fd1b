"""Quality-control rules of a participant's run."""
