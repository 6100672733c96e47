# kqueue worker image: `docker build -t kqueue .`
# Runs as a non-root user; the entrypoint is the `kqueue` CLI, so `docker run kqueue consume ...`.
# Your tasks go in an image built FROM this one (see docs/kubernetes.md).
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# A fixed numeric uid/gid, so Kubernetes' runAsNonRoot can check it without a user database.
RUN groupadd --system --gid 10001 kqueue \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/kqueue --create-home \
            --shell /usr/sbin/nologin kqueue

# Only what the package build needs (pyproject names README.md as the long description).
WORKDIR /src
COPY pyproject.toml README.md ./
COPY kqueue ./kqueue
RUN pip install --no-cache-dir . \
 && rm -rf /src

# App code goes here: `kqueue consume --app pkg.mod:app` imports from the working directory.
WORKDIR /app
ENV PYTHONPATH=/app

USER 10001:10001

ENTRYPOINT ["kqueue"]
CMD ["--help"]
