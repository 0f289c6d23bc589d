//! `kafka-transit demo`, when the binary was built with the `demo` feature.

#[cfg(feature = "demo")]
pub(super) async fn demo(records: usize) -> anyhow::Result<()> {
    let report = crate::demo::run(records).await?;
    anyhow::ensure!(
        report.round_trip_identical,
        "the decrypted records differ from the originals"
    );
    Ok(())
}

#[cfg(not(feature = "demo"))]
pub(super) async fn demo(_records: usize) -> anyhow::Result<()> {
    anyhow::bail!(
        "this kafka-transit was built without the demo (and its in-process Vault server); \
         from a checkout, run `cargo run --release -p kafka-transit -- demo`"
    )
}
