"""Building blocks shared by several methods (one concern per module)."""
