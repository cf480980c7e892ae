//! The README's Rust example from a dependent crate: pack an ImageFolder
//! tree (format detected), read a record back, stream shuffled epochs and
//! checkpoint the loader's state.

use ringfeed::{Loader, LoaderState};
use ringfeed_user::{image_folder, pack};

#[test]
fn pack_then_stream_two_shuffled_epochs() {
    let folder = image_folder(&["cat", "dog", "eel"], 12);
    let (dataset, manifest) = pack(&folder);
    assert_eq!(manifest.records, 36);

    let mut loader =
        Loader::builder(dataset.path()).batch_size(8).seed(7).epochs(2).cores(2).build().expect("build");
    let mut seen = vec![Vec::new(); 2];
    let mut checkpoint = String::new();
    while let Some(batch) = loader.next() {
        let batch = batch.expect("a batch");
        for ((payload, label), &index) in batch.records().zip(&batch.labels).zip(&batch.indices) {
            let image = folder
                .images
                .iter()
                .find(|i| i.bytes == payload[..])
                .expect("a payload that is one of the files");
            assert_eq!(*label, image.label, "record {index}");
            seen[batch.epoch as usize].push(index);
        }
        checkpoint = loader.state().to_json();
    }
    assert_ne!(seen[0], seen[1], "each epoch has its own order");
    for (epoch, order) in seen.iter().enumerate() {
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..36).collect::<Vec<u64>>(), "epoch {epoch}: every record once");
        assert_ne!(*order, sorted, "epoch {epoch} is shuffled");
    }
    let state = LoaderState::from_json(&checkpoint).expect("the checkpoint parses");
    assert_eq!(state.to_json(), checkpoint);
}
