//! What the training examples log per step: one JSON line each.

/// FNV-1a over a batch's sample identities (record indices, window
/// offsets): identifies the batch in the log.
pub(crate) fn batch_digest(ids: &[u64]) -> String {
    let mut h = 0xcbf2_9ce4_8422_2325_u64;
    for &i in ids {
        for b in i.to_le_bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// One training step, as the examples log it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StepLog {
    /// Steps done, this one included.
    pub(crate) step: u64,
    /// Cross-entropy of the batch, before the update.
    pub(crate) loss: f64,
    /// [`batch_digest`] of the batch's samples.
    pub(crate) batch: String,
    /// Time spent waiting for the loader.
    pub(crate) wait_s: f64,
    /// Whole step time.
    pub(crate) step_s: f64,
}

impl StepLog {
    /// The step as the JSON line the examples print.
    pub(crate) fn print(&self) {
        println!(
            "{{\"step\":{},\"loss\":{:.6},\"batch\":\"{}\",\"wait_ms\":{:.2},\"step_ms\":{:.2}}}",
            self.step,
            self.loss,
            self.batch,
            self.wait_s * 1e3,
            self.step_s * 1e3
        );
    }
}
