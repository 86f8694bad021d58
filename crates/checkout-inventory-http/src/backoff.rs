//! How long to wait before a retry: exponential backoff with jitter, and the
//! service's own `Retry-After` when it sends one.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};

/// The delay before retry number `retry` (0 for the first retry):
/// `base · 2^retry`, capped at `max`, then jittered to a random point in its
/// upper half.
///
/// "Equal jitter" rather than "full jitter": the random half spreads
/// checkouts that failed together so they do not hit the recovering service
/// in lockstep, and the fixed half keeps a retry from following the failure
/// immediately (full jitter can draw zero).
pub(crate) fn backoff_delay(base: Duration, max: Duration, retry: u32) -> Duration {
    let exp = base.saturating_mul(2u32.saturating_pow(retry.min(31)));
    let capped = exp.min(max);
    let half = capped / 2;
    let jitter_nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
    half + Duration::from_nanos(fastrand::u64(0..=jitter_nanos))
}

/// The delay a `Retry-After` header asks for: delta-seconds (`120`) or an
/// HTTP date (`Wed, 21 Oct 2026 07:28:00 GMT`), measured against `now`.
/// A date in the past means "now"; an unreadable header is ignored.
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_stays_in_the_upper_half() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        for _ in 0..200 {
            for (retry, full) in [
                (0, 100),
                (1, 200),
                (2, 400),
                (3, 800),
                (4, 1000),
                (40, 1000),
            ] {
                let d = backoff_delay(base, max, retry);
                let full = Duration::from_millis(full);
                assert!(d >= full / 2 && d <= full, "retry {retry}: {d:?}");
            }
        }
    }

    #[test]
    fn backoff_is_jittered() {
        let draws: std::collections::HashSet<_> = (0..50)
            .map(|_| backoff_delay(Duration::from_secs(1), Duration::from_secs(1), 0))
            .collect();
        assert!(draws.len() > 1);
    }

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            retry_after(&headers("120"), now),
            Some(Duration::from_secs(120))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            retry_after(&headers(&later), now),
            Some(Duration::from_secs(30))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(retry_after(&headers(&earlier), now), Some(Duration::ZERO));
        assert_eq!(retry_after(&headers("soon"), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }
}
