"""Task families: one module per family behind ``base.TaskFamily`` (the seam the commands call)."""
