"""Acquisition metadata: de-identification, protocols, plausibility."""
