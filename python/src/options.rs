//! Keyword arguments that name one of a few choices.

use pyo3::PyResult;
use ringfeed::Shuffle;

use crate::errors::config_error;

/// The value `table` pairs with `given`; a `ConfigError` listing the
/// choices otherwise.
pub(crate) fn choose<T: Copy>(name: &str, given: &str, table: &[(&str, T)]) -> PyResult<T> {
    table.iter().find(|(k, _)| *k == given).map(|&(_, v)| v).ok_or_else(|| {
        let names: Vec<String> = table.iter().map(|(k, _)| format!("{k:?}")).collect();
        config_error(format!("{name} {given:?}: expected one of {}", names.join(", ")))
    })
}

/// The `shuffle` argument of both loaders.
pub(crate) fn shuffle(given: &str) -> PyResult<Shuffle> {
    choose(
        "shuffle",
        given,
        &[("global", Shuffle::Global), ("block", Shuffle::block()), ("sequential", Shuffle::Sequential)],
    )
}
