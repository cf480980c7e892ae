//! Token-window batches for language models: which windows make each
//! batch ([`WindowPlan`]) and a loader that reads them from any
//! [`TokenCorpus`](crate::TokenCorpus) ([`TokenLoader`]).

mod loader;
mod packed;
mod plan;

pub use self::loader::{Packing, TokenBatch, TokenLoader, TokenLoaderBuilder, TokenState};
pub use self::packed::Segment;
pub use self::plan::{WindowMode, WindowPlan};
