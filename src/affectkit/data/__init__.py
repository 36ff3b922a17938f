"""Data: reading and validating AffectNet-style data, splits, the decoded-image cache, augmentation, loading."""
