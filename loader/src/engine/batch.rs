//! A batch of records as the loader hands it over.

use bytes::Bytes;

/// One batch: the records' payloads in one contiguous buffer, plus their
/// dataset indices and labels, in batch order.
///
/// Payloads are slices of that buffer: [`Batch::record`] and
/// [`Batch::records`] hand out [`Bytes`] without copying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Epoch the batch belongs to.
    pub epoch: u64,
    /// Index of the batch within the epoch, for this rank.
    pub index: u64,
    /// Dataset index of each record.
    pub indices: Vec<u64>,
    /// Label of each record (0 when the dataset has none).
    pub labels: Vec<i64>,
    /// Records left out under [`ErrorPolicy::Skip`](crate::ErrorPolicy::Skip)
    /// (dataset indices); empty otherwise.
    pub skipped: Vec<u64>,
    /// Records replaced under [`ErrorPolicy::Replace`](crate::ErrorPolicy::Replace),
    /// as `(corrupt, substitute)` dataset indices; the substitute's index
    /// and label are in `indices` and `labels`. Empty otherwise.
    pub replaced: Vec<(u64, u64)>,
    /// Decoded and augmented images `[B, C, H, W]`, when the loader was
    /// given an [`ImagePipeline`](crate::ImagePipeline).
    pub images: Option<super::images::Images>,
    data: Bytes,
    /// End offset of each record in `data`.
    ends: Vec<usize>,
}

impl Batch {
    pub(crate) fn new(
        epoch: u64,
        index: u64,
        indices: Vec<u64>,
        labels: Vec<i64>,
        data: Bytes,
        ends: Vec<usize>,
    ) -> Self {
        debug_assert_eq!(indices.len(), ends.len());
        Batch {
            epoch,
            index,
            indices,
            labels,
            skipped: Vec::new(),
            replaced: Vec::new(),
            images: None,
            data,
            ends,
        }
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Payload of record `i` (zero-copy).
    pub fn record(&self, i: usize) -> Bytes {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        self.data.slice(start..self.ends[i])
    }

    /// Payloads of all records, in order (zero-copy).
    pub fn records(&self) -> impl ExactSizeIterator<Item = Bytes> + '_ {
        (0..self.len()).map(|i| self.record(i))
    }

    /// All payloads back to back.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// Total payload bytes.
    pub fn payload_bytes(&self) -> usize {
        self.data.len()
    }
}

/// A stable 64-bit digest of a stream of batches (record indices, lengths
/// and a CRC32C of each payload, in order), so two runs, two machines or
/// two core counts can be compared. FNV-1a over those fields: stable across
/// Rust versions, unlike `std`'s hasher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest(u64);

impl Default for Digest {
    fn default() -> Self {
        Digest(0xcbf2_9ce4_8422_2325)
    }
}

impl Digest {
    fn word(&mut self, w: u64) {
        for b in w.to_le_bytes() {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// Folds one batch into the digest (and its decoded images, if any).
    pub fn update(&mut self, batch: &Batch) {
        self.word(batch.len() as u64);
        for (i, rec) in batch.records().enumerate() {
            self.word(batch.indices[i]);
            self.word(rec.len() as u64);
            self.word(u64::from(crc32c::crc32c(&rec)));
        }
        if let Some(images) = &batch.images {
            self.word(images.data().len() as u64);
            self.word(u64::from(crc32c::crc32c(images.data())));
        }
    }

    /// The digest as 16 hex digits.
    pub fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}
