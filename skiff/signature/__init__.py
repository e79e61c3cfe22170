"""skiff.signature."""
