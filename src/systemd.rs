//! The systemd notify protocol (sd_notify): READY, RELOADING with MONOTONIC_USEC, STOPPING,
//! STATUS and watchdog pings. Every call is a no-op when not run by systemd (no
//! NOTIFY_SOCKET), and a failure to notify is logged, never fatal.

use std::time::Duration;

use sd_notify::NotifyState;

fn send(states: &[NotifyState]) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    match send_to(&socket, states) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            tracing::debug!("systemd's notify socket is full; a notification was dropped");
        }
        Err(e) => tracing::warn!("cannot notify systemd: {e}"),
    }
}

/// `sd_notify::notify`, without ever blocking: its send waits while the receiver's queue is
/// full (`net.unix.max_dgram_qlen`, 10 by default), and a service manager slow to read would
/// then stall a worker thread of the daemon, its shutdown included. A notification that
/// does not fit is dropped instead (the next ping or status replaces it).
fn send_to(socket: &std::ffi::OsStr, states: &[NotifyState]) -> std::io::Result<()> {
    let message: String = states.iter().map(|s| format!("{s}\n")).collect();
    let datagram = std::os::unix::net::UnixDatagram::unbound()?;
    datagram.set_nonblocking(true)?;
    datagram.connect(socket)?;
    let sent = datagram.send(message.as_bytes())?;
    if sent == message.len() {
        Ok(())
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            "incomplete notification",
        ))
    }
}

/// Start-up is complete: configuration, rules, store and first pool fetch are done.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A reload begins (systemd >= 253 wants the monotonic time with it).
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// The reload is over (whatever its outcome: the service is running either way).
pub fn reloaded(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("stopping: draining requests in flight"),
    ]);
}

pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// How often systemd expects a watchdog ping, if it does.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_manager_that_does_not_read_never_blocks_the_daemon() {
        let path = std::env::temp_dir().join(format!("callroute-notify-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let receiver = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        let mut dropped = 0;
        // Far more than the queue holds; none is read.
        for _ in 0..1_000 {
            match send_to(path.as_os_str(), &[NotifyState::Watchdog]) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => dropped += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(dropped > 0, "the queue never filled");
        let mut buffer = [0u8; 64];
        let read = receiver.recv(&mut buffer).unwrap();
        assert_eq!(&buffer[..read], b"WATCHDOG=1\n");
        let _ = std::fs::remove_file(&path);
    }
}
