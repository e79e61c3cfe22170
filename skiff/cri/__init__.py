"""skiff.cri."""
