//! Round-trip time estimation from PING/PONG samples (RFC 6298).
//!
//! Pure arithmetic on durations; it never reads a clock.

use std::time::Duration;

/// Smoothed RTT and RTT variance, updated per RFC 6298 §2:
/// the first sample `R` sets `SRTT = R`, `RTTVAR = R/2`; later ones set
/// `RTTVAR = 3/4·RTTVAR + 1/4·|SRTT − R|`, then `SRTT = 7/8·SRTT + 1/8·R`.
///
/// Kept in whole microseconds (16 bytes per connection); samples above
/// ~71 minutes saturate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RttEstimator {
    srtt_us: u32,
    rttvar_us: u32,
    latest_us: u32,
    samples: u32,
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

fn duration(us: u32) -> Duration {
    Duration::from_micros(us.into())
}

impl RttEstimator {
    /// Folds in one round-trip sample.
    pub fn sample(&mut self, rtt: Duration) {
        let r = u64::from(micros(rtt));
        self.latest_us = micros(rtt);
        if self.samples == 0 {
            self.srtt_us = micros(rtt);
            self.rttvar_us = micros(rtt) / 2;
        } else {
            let srtt = u64::from(self.srtt_us);
            let diff = srtt.abs_diff(r);
            // Both results are weighted means of u32 values: they fit.
            self.rttvar_us = ((3 * u64::from(self.rttvar_us) + diff) / 4) as u32;
            self.srtt_us = ((7 * srtt + r) / 8) as u32;
        }
        self.samples = self.samples.saturating_add(1);
    }

    /// The smoothed round-trip time, once there is a sample.
    pub fn srtt(&self) -> Option<Duration> {
        (self.samples > 0).then(|| duration(self.srtt_us))
    }

    /// The round-trip time variance, once there is a sample.
    pub fn rttvar(&self) -> Option<Duration> {
        (self.samples > 0).then(|| duration(self.rttvar_us))
    }

    /// The most recent sample.
    pub fn latest(&self) -> Option<Duration> {
        (self.samples > 0).then(|| duration(self.latest_us))
    }

    /// How many samples were folded in.
    pub fn samples(&self) -> u32 {
        self.samples
    }
}

#[cfg(test)]
mod tests {
    use super::RttEstimator;
    use std::time::Duration;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn first_sample_sets_srtt_and_half_variance() {
        let mut r = RttEstimator::default();
        assert_eq!(r.srtt(), None);
        assert_eq!(r.rttvar(), None);
        r.sample(ms(100));
        assert_eq!(r.srtt(), Some(ms(100)));
        assert_eq!(r.rttvar(), Some(ms(50)));
    }

    #[test]
    fn later_samples_follow_rfc6298() {
        let mut r = RttEstimator::default();
        r.sample(ms(100));
        r.sample(ms(200));
        // RTTVAR = 3/4·50 + 1/4·|100 − 200| = 37.5 + 25 = 62.5
        assert_eq!(r.rttvar(), Some(Duration::from_micros(62_500)));
        // SRTT = 7/8·100 + 1/8·200 = 112.5
        assert_eq!(r.srtt(), Some(Duration::from_micros(112_500)));
        assert_eq!(r.latest(), Some(ms(200)));
        assert_eq!(r.samples(), 2);
    }

    #[test]
    fn steady_samples_converge() {
        let mut r = RttEstimator::default();
        r.sample(ms(500));
        for _ in 0..200 {
            r.sample(ms(10));
        }
        let srtt = r.srtt().unwrap();
        assert!(
            srtt >= ms(10) && srtt < Duration::from_micros(10_100),
            "{srtt:?}"
        );
        assert!(r.rttvar().unwrap() < Duration::from_micros(100));
    }
}
