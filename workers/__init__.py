"""EchoCXR."""
