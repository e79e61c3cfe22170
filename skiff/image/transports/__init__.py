"""skiff.image.transports."""
