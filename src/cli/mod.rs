//! Commands of the binary that talk to Synthflow and the store without the daemon.

/// Standard output for every command: a reader that went away (`callroute explain | head`)
/// ends the program quietly, as it does for `cat`, instead of a panic. Defined before the
/// command modules so that every one of them prints through it.
macro_rules! print {
    ($($arg:tt)*) => { $crate::cli::write_stdout(&format!($($arg)*)) };
}
macro_rules! println {
    () => { $crate::cli::write_stdout("\n") };
    ($($arg:tt)*) => { $crate::cli::write_stdout(&(format!($($arg)*) + "\n")) };
}

pub fn write_stdout(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        stdout_failed(&e);
    }
}

fn stdout_failed(e: &std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("error: cannot write to standard output: {e}");
    std::process::exit(1);
}

/// Standard output as a writer (for serializers), with the same end as `print!`.
pub struct Stdout;

impl std::io::Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stdout().write(buf).or_else(|e| stdout_failed(&e))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().flush().or_else(|e| stdout_failed(&e))
    }
}

pub mod compliance;
pub mod pool;
pub mod results;
