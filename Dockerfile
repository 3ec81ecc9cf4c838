# ImageTrail backend: API and web explorer, served by `imagetrail serve`.
#
#   docker build -t imagetrail .
#   docker run -p 8080:8080 -e IMAGETRAIL_DATABASE_URL=postgresql+psycopg://... imagetrail
#
# BASE_IMAGE is any Debian-like image with python3 (>= 3.9) and its venv module; both stages
# must use the same one, because the virtual environment links to the base image's interpreter.
# Pip's index settings pass through as build arguments (PIP_INDEX_URL, PIP_EXTRA_INDEX_URL,
# PIP_TRUSTED_HOST, and PIP_CERT: a CA bundle inside BASE_IMAGE, for a TLS-inspecting proxy)
# for builds behind a mirror; they stay out of the final image.
ARG BASE_IMAGE=python:3.12-slim-bookworm

FROM ${BASE_IMAGE} AS build
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_TRUSTED_HOST
ARG PIP_CERT
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
RUN python3 -m venv /opt/imagetrail
COPY pyproject.toml README.md /src/
COPY src /src/src
RUN /opt/imagetrail/bin/pip install --no-compile "/src[server]" \
 && /opt/imagetrail/bin/python -m compileall -q /opt/imagetrail/lib \
 && /opt/imagetrail/bin/pip uninstall -y -q pip setuptools \
 && find /opt/imagetrail -name tests -type d -path '*/site-packages/*/tests' -prune -exec rm -rf {} +

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="ImageTrail" \
      org.opencontainers.image.description="Code-to-cloud map for container images" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/imagetrail /opt/imagetrail
# A fixed numeric user, so Kubernetes' runAsNonRoot can check it without /etc/passwd.
RUN mkdir -p /var/lib/imagetrail && chown 10001:10001 /var/lib/imagetrail
USER 10001:10001
WORKDIR /var/lib/imagetrail
ENV PATH=/opt/imagetrail/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    IMAGETRAIL_HOST=0.0.0.0 \
    IMAGETRAIL_PORT=8080 \
    IMAGETRAIL_WORKERS=2
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('IMAGETRAIL_PORT', '8080'), timeout=4)"]
ENTRYPOINT ["imagetrail"]
CMD ["serve"]
