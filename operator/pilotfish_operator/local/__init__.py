"""Local mode: the whole mesh on one machine, real Envoy per injected pod, no cluster."""
