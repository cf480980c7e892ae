//! Token-window batches for language models: which windows make each
//! batch ([`WindowPlan`]) and a loader that reads them from any
//! [`TokenCorpus`](crate::TokenCorpus) ([`TokenLoader`]).

mod loader;
mod plan;

pub use self::loader::{TokenBatch, TokenLoader, TokenLoaderBuilder, TokenState};
pub use self::plan::{WindowMode, WindowPlan};
