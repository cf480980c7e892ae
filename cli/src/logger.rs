//! A minimal stderr logger for the library's warnings (memlock, I/O mode
//! fallbacks, skipped records).

struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, meta: &log::Metadata<'_>) -> bool {
        meta.level() <= log::Level::Warn
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            // Messages name files and records: one line each, whatever
            // the names hold.
            let message = record.args().to_string();
            eprintln!("{}: {}", record.level().as_str().to_lowercase(), crate::output::escaped(&message));
        }
    }

    fn flush(&self) {}
}

pub(crate) fn init() {
    static LOGGER: StderrLogger = StderrLogger;
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Warn);
    }
}
