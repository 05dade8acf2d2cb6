# One image for every weft process on Kubernetes: the control-plane components
# (`weft controller identity|destination|proxy-injector|sp-validator|...`), the injected proxy
# (`weft proxy`) and its init container (`weft proxy-init`, which needs iptables).
#
# NOT BUILT OR TESTED HERE: the machines this project is developed and tested on have no
# container engine. It is kept minimal on purpose; build it with
#   docker build -t <registry>/weft:0.1.0 .
# and install with `weft install --image <registry>/weft` (the tag defaults to weft's version).

FROM python:3.11-slim-bookworm AS build
# The build hook compiles the proxy's request path with mypyc, which needs a C compiler.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml hatch_build.py README.md ./
COPY weft ./weft
# The hatchling build hook compiles the .proto files with the pinned grpcio-tools.
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
RUN apt-get update \
    && apt-get install -y --no-install-recommends iptables \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
# Pods choose their user (2103 for the control plane, 2102 for the proxy, root for
# proxy-init); this is only the default for a bare `docker run`.
USER 2103
CMD ["weft", "--help"]
