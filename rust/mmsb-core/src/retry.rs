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
//!
//! The same backoff drives [`retry_with`], the general form: any error type,
//! any "is this retryable" rule, and optional *jitter* (each sleep drawn
//! uniformly from `[delay/2, delay]`), which optimistic transactions use so that
//! threads that conflicted together do not retry in lockstep
//! (see [`transaction`](crate::transaction)).

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
    retry_with(policy, false, is_transient, |_| op())
}

/// Runs `op(attempt)` (attempts numbered from 1), retrying the errors for
/// which `retryable` holds with exponential backoff, jittered if `jitter`.
///
/// Returns the first success, the first error that is not retryable, or the
/// last retryable error once `policy.max_attempts` attempts have failed.
pub fn retry_with<T, E>(
    policy: RetryPolicy,
    jitter: bool,
    retryable: impl Fn(&E) -> bool,
    mut op: impl FnMut(u32) -> Result<T, E>,
) -> Result<T, E> {
    let mut delay = policy.first_delay;
    let mut attempt = 1;
    loop {
        match op(attempt) {
            Ok(v) => return Ok(v),
            Err(e) if retryable(&e) && attempt < policy.max_attempts.max(1) => {
                let sleep = if jitter { jittered(delay) } else { delay };
                if !sleep.is_zero() {
                    std::thread::sleep(sleep);
                }
                delay = (delay * 2).min(policy.max_delay);
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// A duration drawn uniformly from `[d/2, d]` (a per-thread xorshift generator:
/// jitter needs spread, not cryptographic quality).
pub fn jittered(d: Duration) -> Duration {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(seed());
    }
    fn seed() -> u64 {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let local = 0u8;
        // Mix the time with this thread's stack address so threads differ.
        (t ^ (&local as *const u8 as u64).rotate_left(32)) | 1
    }
    let r = STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        x
    });
    let nanos = d.as_nanos().min(u64::MAX as u128) as u64;
    let half = nanos / 2;
    Duration::from_nanos(half + r % (nanos - half + 1))
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
    fn jitter_stays_within_half_to_full_delay() {
        let d = Duration::from_micros(100);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let j = jittered(d);
            assert!(j >= d / 2 && j <= d, "{j:?}");
            seen.insert(j);
        }
        assert!(seen.len() > 10, "jitter should spread the delays");
        assert_eq!(jittered(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn retry_with_numbers_attempts_and_stops_on_fatal_errors() {
        let policy = RetryPolicy {
            max_attempts: 10,
            first_delay: Duration::from_micros(1),
            max_delay: Duration::from_micros(4),
        };
        let mut seen = Vec::new();
        let r: Result<(), &str> = retry_with(
            policy,
            true,
            |e| *e == "again",
            |a| {
                seen.push(a);
                Err(if a < 3 { "again" } else { "fatal" })
            },
        );
        assert_eq!(r, Err("fatal"));
        assert_eq!(seen, vec![1, 2, 3]);
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
