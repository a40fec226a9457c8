"""Data protection: a learner's data exported (GDPR art. 15/20) and erased (art. 17)."""
