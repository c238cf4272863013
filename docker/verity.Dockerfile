# The `verity` image: control plane (`serve`), workers (`work`), storage proxy (`storage-proxy`)
# and `migrate`. Build from the repository root:
#   docker build -f docker/verity.Dockerfile -t verity:dev .
FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p verity-controlplane --bin verity

# distroless/cc has glibc and CA certificates and nothing else; `nonroot` is uid 65532, the
# uid the operator's pod security context runs as.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/verity /usr/local/bin/verity
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/verity"]
CMD ["serve"]
