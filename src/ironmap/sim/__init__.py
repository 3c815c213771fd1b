"""The digital multicenter MS cohort: phantom anatomy, signal models, truth (arrays only)."""
