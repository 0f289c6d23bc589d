//! The identity policy: every record goes to the sink unchanged. It is the baseline
//! that benchmarks measure the cost of protection against.

use kafka_transit_policy_sdk::{export_policy, forward, Policy, SourceRecord, TransformResult};

struct Passthrough;

impl Policy for Passthrough {
    fn init(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn transform(batch: Vec<SourceRecord>) -> Vec<TransformResult> {
        batch.into_iter().map(|r| Ok(vec![forward(r)])).collect()
    }
}

export_policy!(Passthrough);
