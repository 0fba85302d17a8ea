//! Retry with backoff: the one place transient failures are retried.
//!
//! Some system calls fail for reasons that say nothing about the request:
//! a signal interrupted them (`EINTR`) or the resource was momentarily busy
//! (`EAGAIN` / `EWOULDBLOCK`). Retrying them is right; retrying anything else
//! is wrong, because an `EIO` or `ENOSPC` retried in a loop hides a dying disk
//! or a full one, and after a failed `fsync` the kernel may already have
//! dropped the dirty pages, so a second `fsync` that "succeeds" proves nothing.
//!
//! [`retry_io`] is the single helper every file operation of the durable store
//! goes through. It retries only [`is_transient`] errors, with exponential
//! backoff starting at [`RetryPolicy::first_delay`] and giving up after
//! [`RetryPolicy::max_attempts`]; every other error is returned at once and the
//! caller turns it into an [`Error`](crate::Error) (`Io`, `NoSpace`).

use std::io;
use std::time::Duration;

/// How often and how patiently a transient failure is retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
    /// Sleep before the second attempt; doubled before each later one.
    pub first_delay: Duration,
    /// Upper bound of one sleep.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 8,
            first_delay: Duration::from_micros(50),
            max_delay: Duration::from_millis(20),
        }
    }
}

/// Whether an I/O error is transient (`EINTR`, `EAGAIN`/`EWOULDBLOCK`): the same call may succeed.
pub fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
    )
}

/// Runs `op` under the default policy; see [`retry_io_with`].
pub fn retry_io<T>(op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    retry_io_with(RetryPolicy::default(), op)
}

/// Runs `op`, retrying transient failures with exponential backoff.
///
/// Returns the first success, the first non-transient error, or the last
/// transient error once `policy.max_attempts` attempts have failed.
pub fn retry_io_with<T>(
    policy: RetryPolicy,
    mut op: impl FnMut() -> io::Result<T>,
) -> io::Result<T> {
    let mut delay = policy.first_delay;
    let mut attempt = 1;
    loop {
        match op() {
            Ok(v) => return Ok(v),
            Err(e) if is_transient(&e) && attempt < policy.max_attempts.max(1) => {
                std::thread::sleep(delay);
                delay = (delay * 2).min(policy.max_delay);
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_errors_are_retried_until_success() {
        let mut n = 0;
        let r = retry_io(|| {
            n += 1;
            if n < 3 {
                Err(io::Error::from(io::ErrorKind::Interrupted))
            } else {
                Ok(n)
            }
        });
        assert_eq!(r.unwrap(), 3);
    }

    #[test]
    fn fatal_errors_are_not_retried() {
        let mut n = 0;
        let r: io::Result<()> = retry_io(|| {
            n += 1;
            Err(io::Error::from_raw_os_error(28))
        });
        assert_eq!(r.unwrap_err().raw_os_error(), Some(28));
        assert_eq!(n, 1);
    }

    #[test]
    fn retries_give_up_after_the_policy_limit() {
        let mut n = 0;
        let policy = RetryPolicy {
            max_attempts: 4,
            first_delay: Duration::from_micros(1),
            max_delay: Duration::from_micros(2),
        };
        let r: io::Result<()> = retry_io_with(policy, || {
            n += 1;
            Err(io::Error::from(io::ErrorKind::WouldBlock))
        });
        assert!(r.is_err());
        assert_eq!(n, 4);
    }
}
