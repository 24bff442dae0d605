# clustermass: the benchmark's container image.
#
#   docker build -t clustermass .                       (or: make image / make image-check)
#   docker run --rm clustermass                          -> lists the Make targets
#   docker run --rm -v /path/to/shared/data/chandra:/shared/data/chandra:ro \
#              -v $PWD/my_submission:/submission clustermass make evaluate SUBMISSION=/submission
#
# Python packages: exactly requirements.lock, then the project itself with --no-deps (the same
# two commands as the Makefile's virtualenv rule; there is no second dependency list here).
# The Chandra ARF/RMF are not in the image: mount them at /shared/data/chandra
# (CLUSTERMASS_RESPONSES).
#
# BASE_IMAGE: any Debian bookworm image (its python3 is 3.11). The default is the local tag
# that .ci/image-check.sh makes with debootstrap, because nothing can be pulled on the
# development machines; elsewhere `--build-arg BASE_IMAGE=debian:bookworm-slim` works as well.
ARG BASE_IMAGE=clustermass-base:bookworm

# ---------------------------------------------------------------- project source
# A clean copy of the build context. The optional host CA (.ci/build-ca.pem, see the builder
# stage) is dropped here, so no later stage that copies the source can carry it.
FROM ${BASE_IMAGE} AS source
COPY . /src
RUN rm -f /src/.ci/build-ca.pem

# ---------------------------------------------------------------- virtualenv
FROM ${BASE_IMAGE} AS builder
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/clustermass
# Where the host reaches PyPI through a TLS proxy with its own CA, .ci/image-check.sh puts that
# CA at .ci/build-ca.pem (the [m] pattern lets the file be absent). Only this stage reads it,
# and the final image copies nothing from /tmp/build.
COPY requirements.lock .ci/build-ca.pe[m] /tmp/build/
RUN python3 -m venv .venv \
    && if [ -s /tmp/build/build-ca.pem ]; then export PIP_CERT=/tmp/build/build-ca.pem; fi \
    && .venv/bin/pip install --no-cache-dir --disable-pip-version-check -r /tmp/build/requirements.lock

# ---------------------------------------------------------------- final image
FROM ${BASE_IMAGE}
ARG DEBIAN_FRONTEND=noninteractive
# git for DataLad (git-annex itself comes from the lock file's git-annex wheel, in .venv/bin),
# make for the targets, bubblewrap for the sandbox of code submissions.
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 git make bubblewrap \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 --user-group --shell /bin/bash clustermass \
    && git config --system user.name "clustermass container" \
    && git config --system user.email "clustermass@localhost" \
    && git config --system init.defaultBranch main

WORKDIR /opt/clustermass
# The virtualenv stays root-owned (the user cannot change what the lock file installed); the
# work folder is the user's (the folder itself too, chown below), so targets can write data/,
# results/ and build/.
COPY --from=builder /opt/clustermass/.venv /opt/clustermass/.venv
COPY --from=source --chown=clustermass:clustermass /src /opt/clustermass
# The project itself, as the Makefile installs it (offline: no dependencies, the venv's own
# setuptools). Done here rather than in the builder so that a source change does not copy the
# whole virtualenv again. The Makefile recreates .venv when its stamp is older than
# requirements.lock/pyproject.toml: touch it so that every target uses this .venv.
RUN .venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps --no-build-isolation -e . \
    && .venv/bin/pip check \
    && touch /opt/clustermass/.venv/.installed \
    && chown clustermass:clustermass /opt/clustermass \
    && install -d -o clustermass -g clustermass /opt/clustermass/build \
        /opt/clustermass/build/config /opt/clustermass/build/cache \
        /opt/clustermass/build/mpl /opt/clustermass/build/keras

# The image has no .git: the build passes the project's `git describe` so that dataset
# provenance can name the code (read by the pipeline as CLUSTERMASS_CODE_VERSION). Declared
# after the last RUN so that a new commit rebuilds no layer but these.
ARG CLUSTERMASS_CODE_VERSION=unknown
LABEL org.opencontainers.image.title="clustermass" \
      org.opencontainers.image.revision="${CLUSTERMASS_CODE_VERSION}"
ENV CLUSTERMASS_CODE_VERSION=${CLUSTERMASS_CODE_VERSION} \
    PATH=/opt/clustermass/.venv/bin:$PATH \
    XDG_CONFIG_HOME=/opt/clustermass/build/config \
    XDG_CACHE_HOME=/opt/clustermass/build/cache \
    MPLCONFIGDIR=/opt/clustermass/build/mpl \
    KERAS_HOME=/opt/clustermass/build/keras \
    MPLBACKEND=Agg \
    TF_CPP_MIN_LOG_LEVEL=2 \
    PYTHONUNBUFFERED=1 \
    CLUSTERMASS_RESPONSES=/shared/data/chandra

# numeric, so that runtimes checking runAsNonRoot (Kubernetes) can verify it: 1000 = clustermass
USER 1000:1000
CMD ["make", "help"]
