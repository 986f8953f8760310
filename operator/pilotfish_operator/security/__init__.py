"""Identity and certificates: X.509 primitives (`pki`), the mesh CA (`ca`) and the
issuer that keeps each workload's certificate fresh (`issuer`)."""
