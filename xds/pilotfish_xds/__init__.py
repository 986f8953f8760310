"""Pilotfish xDS side: mesh IR to Envoy resources, snapshot cache, ADS server."""
