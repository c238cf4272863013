# The `verity` image: control plane (`serve`), workers (`work`), storage proxy (`storage-proxy`)
# and `migrate`. Build from the repository root:
#   docker build -f docker/verity.Dockerfile -t verity:dev .
# The file tree comes from the same staging step as the images built without Docker
# (e2e/images/build): the binary, exactly the shared libraries it links, CA certificates,
# /etc/passwd with nonroot (65532), /tmp, /home/nonroot. Both ways give the same layout.
FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN e2e/images/build rootfs verity /rootfs

FROM scratch
COPY --from=build /rootfs /
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/verity"]
CMD ["serve"]
