//! Resume, the async stream and the validation preset as a dependent uses
//! them: the builder of a planned run resumes to that run's end, a resume
//! that would change the batches is refused, the stream answers `state()`
//! for checkpoints, and a val loader reads every record once.

use futures_lite::StreamExt;
use futures_lite::future::block_on;
use ringfeed::{Error, Loader, LoaderState};
use ringfeed_user::{image_folder, pack};

type Seen = Vec<(u64, Vec<u64>)>;

fn drain(loader: impl Iterator<Item = ringfeed::Result<ringfeed::Batch>>) -> Seen {
    loader.map(|b| b.expect("a batch")).map(|b| (b.epoch, b.indices)).collect()
}

#[test]
fn a_planned_run_resumes_to_its_end_and_refuses_changes() {
    let folder = image_folder(&["cat", "dog", "eel"], 12);
    let (dataset, _) = pack(&folder);
    let plan = || Loader::builder(dataset.path()).batch_size(5).seed(7).epochs(2).cores(2);
    let full = drain(plan().build().expect("build"));
    assert_eq!(full.len(), 2 * 8, "36 records in batches of 5: 8 per epoch");

    // Stop inside epoch 1, checkpoint, resume with the same builder.
    let mut first = plan().build().expect("build");
    let mut got = drain(first.by_ref().take(11));
    let checkpoint = first.state().to_json();
    drop(first);
    let state = LoaderState::from_json(&checkpoint).expect("the checkpoint parses");
    got.extend(drain(plan().resume(state).build().expect("resume")));
    assert_eq!(got, full, "the resumed run ends where the plan does, no third epoch");

    // A different batch size on the resuming builder is refused.
    match plan().batch_size(6).resume(state).build() {
        Err(Error::Config(msg)) => assert!(msg.contains('6') && msg.contains('5'), "{msg}"),
        other => panic!("expected a configuration error, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn the_stream_checkpoints_like_the_loader() {
    let folder = image_folder(&["cat", "dog", "eel"], 12);
    let (dataset, _) = pack(&folder);
    let plan = || Loader::builder(dataset.path()).batch_size(5).seed(1).epochs(2).cores(2);
    let mut blocking = plan().build().expect("build");
    blocking.by_ref().take(10).for_each(|b| drop(b.expect("a batch")));
    let want = blocking.state();
    drop(blocking);

    block_on(async {
        let mut stream = plan().build_async().await.expect("build").into_stream();
        assert_eq!(stream.classes(), ["cat", "dog", "eel"]);
        for _ in 0..10 {
            stream.next().await.expect("an item").expect("a batch");
        }
        assert_eq!(stream.state(), want);
        assert_eq!(stream.metrics().batches, 10);
        stream.close().await;
    });
}

#[test]
fn the_val_preset_reads_every_record_once_in_order() {
    let folder = image_folder(&["cat", "dog"], 7);
    let (dataset, _) = pack(&folder);
    let val = Loader::builder(dataset.path()).for_validation().batch_size(4).build().expect("build");
    assert_eq!(val.classes(), ["cat", "dog"]);
    let seen = drain(val);
    assert_eq!(seen.iter().map(|(_, b)| b.len()).collect::<Vec<_>>(), [4, 4, 4, 2]);
    let all: Vec<u64> = seen.into_iter().flat_map(|(_, b)| b).collect();
    assert_eq!(all, (0..14).collect::<Vec<u64>>());
}
