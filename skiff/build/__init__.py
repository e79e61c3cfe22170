"""skiff.build."""
