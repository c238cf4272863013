# The `verity-operator` image. Build from the repository root:
#   docker build -f docker/verity-operator.Dockerfile -t verity-operator:dev .
FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p verity-operator --bin verity-operator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/verity-operator /usr/local/bin/verity-operator
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/verity-operator"]
