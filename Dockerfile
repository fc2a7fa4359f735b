# The host image deploy/base/deployment.yaml runs (`ballast:0.1.0`): docker build -t ballast:0.1.0 .
# The build needs the wasm32-wasip2 target: host/build.rs compiles the built-in plugins from plugins/.
FROM rust:1.95-bookworm AS build
RUN rustup target add wasm32-wasip2
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p ballast && cp target/release/ballast /ballast

# glibc, CA certificates (OCI registries over TLS), no shell; UID 65532 as the Deployment's securityContext expects.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /ballast /usr/local/bin/ballast
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/ballast"]
