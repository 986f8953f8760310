"""Where objects come from: a directory of YAML (local mode) or the Kubernetes API."""
