//! Commands of the binary that talk to Synthflow and the store without the daemon.

pub mod compliance;
pub mod pool;
