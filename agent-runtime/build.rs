//! Compiles the subset of containerd's API the containerd backend speaks (`proto/containerd`)
//! with the pure-Rust `protox`, so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "containers.proto",
        "content.proto",
        "diff.proto",
        "images.proto",
        "leases.proto",
        "snapshots.proto",
        "tasks.proto",
        "version.proto",
    ];
    println!("cargo:rerun-if-changed=proto/containerd");
    let fds = protox::compile(files, ["proto/containerd"])?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}
