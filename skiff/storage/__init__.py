"""skiff.storage."""
