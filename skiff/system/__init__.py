"""skiff.system."""
