# Pilotfish control-plane image. One image, two uses:
#   pilotfish operator       the control-plane Deployment (runs as the unprivileged user below)
#   pilotfish capture-init   the `pilotfish-init` container of injected pods; it installs the
#                            iptables redirect and so runs as uid 0 with NET_ADMIN/NET_RAW,
#                            which the injection template grants to that container only.
# Not built by the tests (no container runtime on the development machines):
#   docker build -t ghcr.io/pilotfish-mesh/pilotfish:0.1.0 .

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/pilotfish
COPY pyproject.toml /src/
COPY operator /src/operator
COPY xds /src/xds
RUN /opt/pilotfish/bin/pip install /src

FROM ${PYTHON_IMAGE}
# iptables (nf_tables backend, Debian's default) for capture-init; nothing else is added.
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables \
 && rm -rf /var/lib/apt/lists/*
# Same base image in both stages, so the venv's interpreter links stay valid.
COPY --from=build /opt/pilotfish /opt/pilotfish
ENV PATH=/opt/pilotfish/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Numeric, so Kubernetes can check runAsNonRoot without a passwd entry.
USER 65532:65532
ENTRYPOINT ["pilotfish"]
CMD ["operator"]
