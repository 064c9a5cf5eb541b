"""orderengine: a DEX order execution engine that routes swaps to the venue paying the most."""
