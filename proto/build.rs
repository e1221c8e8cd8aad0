//! Compiles `proto/skiff.proto` with the pure-Rust `protox`, so no system `protoc` is needed,
//! and keeps the descriptor set so tools can print any message as JSON.

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/skiff.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("skiff_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Written by hand so that tasks can share their spec (`src/task.rs`).
        .extern_path(".skiff.v1.Task", "crate::task::Task")
        .compile_fds(fds)?;
    Ok(())
}
