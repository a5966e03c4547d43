//! Generates the gRPC clients and servers of every Outpost service from `proto/`, and a
//! descriptor set (with source info) for reflection and the gateway's HTTP transcoding.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let protos = ["ingest", "media", "telemetry", "plotting"]
        .map(|service| root.join(format!("outpost/{service}/v1/{service}.proto")));
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    // SAFETY: build scripts are single-threaded; this only points prost at the bundled protoc.
    unsafe { std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("outpost_descriptor.bin"))
        .bytes(".")
        .compile_protos(&protos, std::slice::from_ref(&root))?;
    println!("cargo:rerun-if-changed={}", root.display());
    Ok(())
}
