//! The options that fix an epoch order, shared by `bench` and `order`.

use ringfeed::{DdpConfig, Shuffle};

#[derive(Debug, clap::Args)]
pub(crate) struct OrderArgs {
    /// Seed of the epoch orders.
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    /// Records per batch.
    #[arg(long, default_value_t = 64)]
    pub(crate) batch: u64,
    /// Epoch order.
    #[arg(long, default_value = "global", value_parser = ["global", "block", "sequential"])]
    shuffle: String,
    /// Records per block (block shuffle).
    #[arg(long, default_value_t = 64)]
    block_len: u64,
    /// Records shuffled together (block shuffle).
    #[arg(long, default_value_t = 1024)]
    window: u64,
    /// This process's rank [default: $RANK or 0].
    #[arg(long)]
    rank: Option<u64>,
    /// Number of ranks [default: $WORLD_SIZE or 1].
    #[arg(long)]
    world: Option<u64>,
    /// Drop each epoch's tail (and partial last batch) instead of padding it.
    #[arg(long)]
    drop_last: bool,
}

impl OrderArgs {
    pub(crate) fn shuffle(&self) -> Shuffle {
        match self.shuffle.as_str() {
            "block" => Shuffle::Block { block_len: self.block_len, window: self.window },
            "sequential" => Shuffle::Sequential,
            _ => Shuffle::Global,
        }
    }

    /// Rank and world from the options, else from torchrun's variables.
    pub(crate) fn ddp(&self) -> ringfeed::Result<DdpConfig> {
        let env = DdpConfig::from_env()?;
        DdpConfig::new(self.rank.unwrap_or(env.rank), self.world.unwrap_or(env.world_size), self.drop_last)
    }
}
