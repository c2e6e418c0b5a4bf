# wicket: a static (musl) binary in a distroless image, non-root.
#
#   docker build -t wicket:latest .
#
# Not built in this project's CI (no container engine there); the binary it
# builds is the one the tests run. The policy components embedded in the
# binary are built for wasm32-wasip2 by host/build.rs.
FROM rust:1.95-bookworm AS build
RUN rustup target add x86_64-unknown-linux-musl wasm32-wasip2 \
 && apt-get update && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --target x86_64-unknown-linux-musl -p wicket \
 && cp target/x86_64-unknown-linux-musl/release/wicket /wicket

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /wicket /usr/local/bin/wicket
# Shared proxy port (k8sTicket's 9001) and metrics/health (k8sTicket's 9999).
EXPOSE 9001 9999
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/wicket"]
CMD ["run", "--config", "/etc/wicket/wicket.toml"]
