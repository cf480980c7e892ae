//! Building and dropping loaders leaves no descriptor open in a crate that
//! depends on ringfeed: the glommio fix (an eventfd per executor leaked
//! every time a loader was built, DataDog/glommio#448) reaches dependents,
//! which a `[patch]` in ringfeed's workspace did not: against crates.io
//! glommio 0.9.0 this test failed with 7 descriptors before the 10
//! two-core loaders and 27 after (20 eventfds), against the fork 5 and 5
//! (stdout and stderr on a terminal rather than a file). One test in its
//! own binary: nothing else opens files while it counts.

use ringfeed::Loader;
use ringfeed_user::{image_folder, open_fds, pack};

#[test]
fn ten_loaders_leave_no_descriptor_open() {
    let folder = image_folder(&["a", "b"], 8);
    let (dataset, _) = pack(&folder);
    let run_one = || {
        let loader = Loader::builder(dataset.path()).batch_size(4).cores(2).build().expect("build a loader");
        let batches = loader.map(|batch| batch.expect("a batch").len()).sum::<usize>();
        assert_eq!(batches, 16);
    };
    // One loader first, so that whatever is opened once per process (the
    // io_uring probe, cached handles) is open before counting.
    run_one();
    let before = open_fds();
    for _ in 0..10 {
        run_one();
    }
    let after = open_fds();
    println!("open descriptors: {} before 10 loaders, {} after", before.len(), after.len());
    assert!(
        after.len() <= before.len(),
        "descriptors leaked by 10 loaders:\nbefore: {before:?}\nafter:  {after:?}"
    );
}
