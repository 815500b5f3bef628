"""Settings every stage reads: paths, profiles, seeds, the hardware."""
