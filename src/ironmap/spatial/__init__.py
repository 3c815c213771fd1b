"""Images in memory (arrays + affines): grids, registration, label transport."""
