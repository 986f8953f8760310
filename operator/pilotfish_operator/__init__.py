"""Pilotfish control plane: Kubernetes side (API models, config sources, translation to IR, CLI)."""
