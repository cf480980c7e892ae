//! Resuming with the builder of the interrupted run: `epochs(n)` is the
//! planned run, so the resumed loader ends where the uninterrupted one
//! would; settings that disagree with the saved state are refused, naming
//! both values; states of another order version are refused.

mod common;

use common::*;
use ringfeed::{DdpConfig, ImageOutput, ImagePipeline, Loader, LoaderBuilder, LoaderState, Shuffle};

/// 100 records of 1..300 bytes.
fn dataset() -> tempfile::TempDir {
    let dir = scratch();
    let sizes: Vec<usize> = (0..100).map(|i| 1 + (i * 37) % 300).collect();
    pack(dir.path(), &records(&sizes), 8_192);
    dir
}

type Seen = Vec<(u64, u64, Vec<u64>)>;

fn take(loader: &mut Loader, n: usize) -> Seen {
    loader.by_ref().take(n).map(|b| b.unwrap()).map(|b| (b.epoch, b.index, b.indices)).collect()
}

fn config_error(builder: LoaderBuilder) -> String {
    match builder.build() {
        Ok(_) => panic!("the builder was accepted"),
        Err(e @ ringfeed::Error::Config(_)) => e.to_string(),
        Err(e) => panic!("not a configuration error: {e}"),
    }
}

/// The state of a 2-epoch run stopped after `stop` batches.
fn stopped_at(plan: &LoaderBuilder, stop: usize) -> LoaderState {
    let mut first = plan.clone().build().unwrap();
    take(&mut first, stop);
    first.state()
}

#[test]
fn the_same_builder_resumes_to_the_planned_end() {
    let dir = dataset();
    for shuffle in [Shuffle::Global, Shuffle::Block { block_len: 4, window: 30 }, Shuffle::Sequential] {
        let plan = Loader::builder(dir.path())
            .batch_size(8)
            .seed(11)
            .shuffle(shuffle)
            .epochs(2)
            .ddp(DdpConfig::default())
            .cores(2);
        let full = take(&mut plan.clone().build().unwrap(), usize::MAX);
        assert_eq!(full.len(), 2 * 13, "100 records in batches of 8, kept partial: 13 per epoch");
        assert_eq!(full.last().map(|b| b.0), Some(1));
        // Mid-epoch 1 (the case that used to deliver a third epoch), in
        // epoch 0, at the boundary, and at the very end.
        for stop in [17, 20, 3, 0, 13, 25, 26] {
            let mut first = plan.clone().build().unwrap();
            let mut got = take(&mut first, stop);
            let saved = first.state().to_json();
            drop(first);
            let mut resumed = plan.clone().resume(LoaderState::from_json(&saved).unwrap()).build().unwrap();
            got.extend(take(&mut resumed, usize::MAX));
            assert_eq!(got, full, "{shuffle:?}, stopped after {stop} batches");
        }
    }
}

#[test]
fn a_plan_from_a_later_start_epoch_resumes_inside_it() {
    let dir = dataset();
    let plan =
        Loader::builder(dir.path()).batch_size(8).seed(3).start_epoch(5).epochs(2).ddp(DdpConfig::default());
    let full = take(&mut plan.clone().build().unwrap(), usize::MAX);
    assert_eq!((full.first().unwrap().0, full.last().unwrap().0, full.len()), (5, 6, 26));
    let state = stopped_at(&plan, 20);
    assert_eq!((state.epoch, state.next_batch), (6, 7));
    let rest = take(&mut plan.clone().resume(state).build().unwrap(), usize::MAX);
    assert_eq!(rest[..], full[20..]);
}

#[test]
fn unset_settings_come_from_the_state() {
    let dir = dataset();
    let plan = Loader::builder(dir.path())
        .batch_size(8)
        .seed(11)
        .shuffle(Shuffle::Block { block_len: 4, window: 30 })
        .drop_last(true)
        .epochs(2)
        .ddp(DdpConfig::new(1, 3, true).unwrap());
    let full = take(&mut plan.clone().build().unwrap(), usize::MAX);
    let state = stopped_at(&plan, 5);
    // Only the plan and the rank (this test's environment has none).
    let bare = Loader::builder(dir.path()).epochs(2).ddp(DdpConfig::new(1, 3, true).unwrap());
    let rest = take(&mut bare.resume(state).build().unwrap(), usize::MAX);
    assert_eq!(rest[..], full[5..]);
}

#[test]
fn conflicting_settings_name_both_values() {
    let dir = dataset();
    let plan = || {
        Loader::builder(dir.path()).batch_size(8).seed(11).epochs(2).ddp(DdpConfig::new(0, 2, false).unwrap())
    };
    let state = stopped_at(&plan(), 3);
    let cases: [(LoaderBuilder, &[&str]); 6] = [
        (plan().batch_size(16), &["batch size", "16", "8"]),
        (plan().seed(12), &["seed", "12", "11"]),
        (plan().shuffle(Shuffle::Sequential), &["shuffle", "Sequential", "Global"]),
        (plan().ddp(DdpConfig::new(1, 2, false).unwrap()), &["rank", "1 of 2", "0 of 2"]),
        (plan().drop_last(true), &["drop_last", "true", "false"]),
        (plan().images(ImagePipeline::val(32, 24)), &["image pipeline", "Val", "no image pipeline"]),
    ];
    for (builder, words) in cases {
        let err = config_error(builder.resume(state));
        assert!(err.contains("saved state"), "{err}");
        for w in words {
            assert!(err.contains(w), "{w:?} missing from: {err}");
        }
    }
    // The same values are no conflict.
    assert!(plan().shuffle(Shuffle::Global).drop_last(false).resume(state).build().is_ok());
}

#[test]
fn the_image_pipeline_is_recorded_and_must_match() {
    let (dir, _) = common::images::dataset(false);
    let train = ImagePipeline::train(24);
    let plan = |p| common::images::loader(dir.path(), p, 1, ringfeed::ErrorPolicy::Fail).epochs(2);
    let state = stopped_at(&plan(train), 2);
    assert_eq!(state.images, Some(train));
    let state = LoaderState::from_json(&state.to_json()).unwrap();
    let raw = ImagePipeline { output: ImageOutput::U8, ..train };
    for (other, want) in [(raw, "U8"), (ImagePipeline::train(32), "size: 32")] {
        let err = config_error(plan(other).resume(state));
        assert!(err.contains("image pipeline") && err.contains(want) && err.contains("size: 24"), "{err}");
    }
    let mut without = state;
    without.images = None;
    assert!(config_error(plan(train).resume(without)).contains("no image pipeline"));
    assert!(plan(train).resume(state).build().is_ok());
}

#[test]
fn a_state_outside_the_plan_is_refused() {
    let dir = dataset();
    let plan = || Loader::builder(dir.path()).batch_size(8).epochs(3).ddp(DdpConfig::default());
    let state = stopped_at(&plan(), 30);
    assert_eq!((state.epoch, state.next_batch), (2, 4));
    let err = config_error(plan().epochs(2).resume(state));
    assert!(err.contains("epoch 2 batch 4") && err.contains("epochs 0..2"), "{err}");
    let err = config_error(plan().start_epoch(3).resume(state));
    assert!(err.contains("outside the planned run"), "{err}");
}

#[test]
fn states_of_an_older_order_are_refused() {
    let dir = dataset();
    let plan = || Loader::builder(dir.path()).batch_size(8).epochs(2).ddp(DdpConfig::default());
    let json = stopped_at(&plan(), 15).to_json();
    assert!(json.contains("\"version\":2"), "{json}");
    // As a build before the field existed wrote it.
    let old = json.replace("\"version\":2,", "");
    let err = config_error(plan().resume(LoaderState::from_json(&old).unwrap()));
    assert!(err.contains("version 1") && err.contains("start_epoch(1)"), "{err}");
}
