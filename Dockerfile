# The host image deploy/base/deployment.yaml runs (`ballast:0.1.0`): docker build -t ballast:0.1.0 .
# The build needs the wasm32-wasip2 target: host/build.rs compiles the built-in plugins from plugins/.
# host/tests/it/deploy.rs builds this file's runtime stage with buildah (RUNTIME_IMAGE replaced by a stand-in made of
# the same Debian 12 libraries, the `build` stage by the test's binary) and checks the image's contents.
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM rust:1.95-bookworm AS build
RUN rustup target add wasm32-wasip2
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p ballast && cp target/release/ballast /ballast

# glibc, CA certificates (OCI registries over TLS), no shell; UID 65532 as the Deployment's securityContext expects.
FROM ${RUNTIME_IMAGE}
COPY --from=build --chown=0:0 --chmod=0755 /ballast /usr/local/bin/ballast
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/ballast"]
