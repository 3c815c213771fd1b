"""Lesion masks: lesion-wise values, seeded growing, segmentation."""
