"""skiff.image."""
