"""`pilotfish dashboard`: the live service graph and a page per service, served on the
monitoring port (the operator's and local mode's) or on its own."""
