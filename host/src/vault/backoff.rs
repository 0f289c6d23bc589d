//! Retry delays: jittered exponential backoff and `Retry-After`.

use std::time::Duration;

use rand::Rng;

/// Delay before retry number `retry` (0 = first retry): `initial * 2^retry`, capped at
/// `max`, then "equal jitter": uniformly random in `[d/2, d]`.
pub(crate) fn backoff_delay(retry: u32, initial: Duration, max: Duration) -> Duration {
    let ceiling = exp_ceiling(retry, initial, max);
    let half = ceiling / 2;
    let span = ceiling.saturating_sub(half);
    if span.is_zero() {
        return ceiling;
    }
    let jitter = rand::thread_rng().gen_range(0..=span.as_nanos().min(u64::MAX as u128) as u64);
    half + Duration::from_nanos(jitter)
}

/// `initial * 2^retry` capped at `max` (no jitter).
pub(crate) fn exp_ceiling(retry: u32, initial: Duration, max: Duration) -> Duration {
    let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
    initial.checked_mul(factor).unwrap_or(max).min(max)
}

/// Parses a `Retry-After` header given in (possibly fractional) seconds; HTTP dates are
/// not used by Vault and give `None` (the normal backoff applies).
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if v.is_empty() {
        return None;
    }
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    match v.parse::<f64>() {
        Ok(f) if (0.0..1e9).contains(&f) => Some(Duration::from_secs_f64(f)),
        _ => None,
    }
}

/// The delay to wait before the next attempt: `Retry-After` when given (capped at `max`),
/// else the jittered backoff.
pub(crate) fn retry_delay(
    retry: u32,
    retry_after: Option<Duration>,
    initial: Duration,
    max: Duration,
) -> Duration {
    match retry_after {
        Some(d) => d.min(max),
        None => backoff_delay(retry, initial, max),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_bounded() {
        let initial = Duration::from_millis(100);
        let max = Duration::from_secs(10);
        for retry in 0..64 {
            let ceiling = exp_ceiling(retry, initial, max);
            assert!(ceiling <= max);
            for _ in 0..50 {
                let d = backoff_delay(retry, initial, max);
                assert!(d <= ceiling, "retry {retry}: {d:?} > {ceiling:?}");
                assert!(
                    d >= ceiling / 2,
                    "retry {retry}: {d:?} < half of {ceiling:?}"
                );
            }
        }
        assert_eq!(exp_ceiling(0, initial, max), Duration::from_millis(100));
        assert_eq!(exp_ceiling(3, initial, max), Duration::from_millis(800));
        assert_eq!(exp_ceiling(7, initial, max), max);
        assert_eq!(exp_ceiling(u32::MAX, initial, max), max);
    }

    #[test]
    fn jitter_varies() {
        let a: Vec<_> = (0..20)
            .map(|_| backoff_delay(5, Duration::from_millis(100), Duration::from_secs(10)))
            .collect();
        assert!(a.iter().any(|d| *d != a[0]));
    }

    #[test]
    fn retry_after_parsing() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after(""), None);
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("NaN"), None);
    }

    #[test]
    fn retry_after_is_capped() {
        let max = Duration::from_secs(2);
        let d = retry_delay(
            0,
            Some(Duration::from_secs(3600)),
            Duration::from_millis(10),
            max,
        );
        assert_eq!(d, max);
        let d = retry_delay(
            0,
            Some(Duration::from_millis(300)),
            Duration::from_millis(10),
            max,
        );
        assert_eq!(d, Duration::from_millis(300));
    }
}
