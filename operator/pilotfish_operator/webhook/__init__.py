"""The admission webhooks the operator serves: sidecar injection (`/inject`) and validation of
the Istio-API kinds (`/validate`), over HTTPS with a certificate the operator keeps current."""
