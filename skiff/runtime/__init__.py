"""skiff.runtime."""
