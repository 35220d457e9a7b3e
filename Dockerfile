# A static meshplan binary in an empty image.
#
#   docker build -t meshplan .
#   docker run --rm -v "$PWD:/work" -w /work meshplan compile inventory.yaml --to 1.28.10 --out plan
#
# The build stage compiles for musl (Alpine's Rust targets it by default), so the binary needs
# no C library at run time; git lets `meshplan --version` name the commit.
FROM rust:1.89-alpine AS build
RUN apk add --no-cache musl-dev git
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin meshplan \
    && strip target/release/meshplan \
    && ./target/release/meshplan --version

FROM scratch
COPY --from=build /src/target/release/meshplan /usr/local/bin/meshplan
# meshplan writes only below --out and reads only the inventory it is given.
USER 65534:65534
ENTRYPOINT ["/usr/local/bin/meshplan"]
CMD ["--help"]
