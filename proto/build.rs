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
        // A oneof holds its largest variant inline: unboxed, every stored object in a log
        // entry, watch event or snapshot took a service's 2.6 KB. Boxing the large rare kinds
        // leaves a task's size (the common object) as the enum's.
        .boxed(".skiff.v1.StoreObject.object.service")
        .boxed(".skiff.v1.StoreObject.object.node")
        .boxed(".skiff.v1.StoreObject.object.cluster")
        .compile_fds(fds)?;
    Ok(())
}
