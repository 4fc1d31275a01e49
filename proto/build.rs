//! Generates the tonic/prost code from `proto/*.proto` with a vendored
//! `protoc`, so building needs no system package.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/fjord.proto");
    println!("cargo:rerun-if-changed=proto/raft.proto");
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    config.bytes(["."]);
    tonic_prost_build::configure().compile_with_config(
        config,
        &["proto/fjord.proto", "proto/raft.proto"],
        &["proto"],
    )?;
    Ok(())
}
