# The `verity-operator` image. Build from the repository root:
#   docker build -f docker/verity-operator.Dockerfile -t verity-operator:dev .
# Staged like the images built without Docker (e2e/images/build), so both give the same layout.
FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN e2e/images/build rootfs verity-operator /rootfs

FROM scratch
COPY --from=build /rootfs /
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/verity-operator"]
