"""The cluster side of the operator: kopf watches the API into the same Store and
pipeline as local mode; status, leader election and the `pilotfish operator` command."""
