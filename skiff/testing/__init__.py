"""skiff.testing."""
