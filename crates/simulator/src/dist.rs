//! Durations and random distributions of durations (session lengths, pod
//! start-up times), as written on the command line.

use std::fmt;
use std::time::Duration;

use rand::Rng;
use rand_distr::{Distribution, Exp, LogNormal};

/// The standard normal quantile of 0.9: p90 = median · e^(σ · Z90).
const Z90: f64 = 1.281_551_565_544_600_5;

/// A bad duration or distribution.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DistError(String);

/// Parses `90`, `90s`, `1.5m`, `2h`, `7d`, `250ms` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration, DistError> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| DistError(format!("`{s}` is not a duration (e.g. 90s, 20m, 1.5h, 7d)")))?;
    let scale = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        other => {
            return Err(DistError(format!(
                "unknown unit `{other}` in `{s}` (ms, s, m, h or d)"
            )));
        }
    };
    let secs = value * scale;
    if !secs.is_finite() || secs > 1e9 {
        return Err(DistError(format!("`{s}` is out of range")));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A distribution of durations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DurationDist {
    /// Always the same.
    Fixed(Duration),
    /// Exponential with this mean.
    Exponential(Duration),
    /// Log-normal with this median and 90th percentile.
    LogNormal {
        /// Half of the draws are shorter.
        median: Duration,
        /// Nine in ten draws are shorter.
        p90: Duration,
    },
}

impl DurationDist {
    /// Parses `20s` (fixed), `fixed:20s`, `exp:20m` (mean) or
    /// `lognormal:45m,90m` (median, p90).
    pub fn parse(s: &str) -> Result<Self, DistError> {
        let s = s.trim();
        let Some((kind, args)) = s.split_once(':') else {
            return Ok(Self::Fixed(parse_duration(s)?));
        };
        match kind.trim() {
            "fixed" => Ok(Self::Fixed(parse_duration(args)?)),
            "exp" | "exponential" => {
                let mean = parse_duration(args)?;
                if mean.is_zero() {
                    return Err(DistError(format!("`{s}`: the mean must be above 0")));
                }
                Ok(Self::Exponential(mean))
            }
            "lognormal" => {
                let (m, p) = args.split_once(',').ok_or_else(|| {
                    DistError(format!(
                        "`{s}`: write lognormal:MEDIAN,P90 (e.g. lognormal:20m,45m)"
                    ))
                })?;
                let (median, p90) = (parse_duration(m)?, parse_duration(p)?);
                if median.is_zero() || p90 <= median {
                    return Err(DistError(format!("`{s}`: needs 0 < median < p90")));
                }
                Ok(Self::LogNormal { median, p90 })
            }
            other => Err(DistError(format!(
                "unknown distribution `{other}` in `{s}` (fixed, exp or lognormal)"
            ))),
        }
    }

    /// A prepared sampler.
    pub fn sampler(&self) -> Sampler {
        match *self {
            Self::Fixed(d) => Sampler::Fixed(d.as_secs_f64()),
            Self::Exponential(mean) => match Exp::new(1.0 / mean.as_secs_f64()) {
                Ok(e) => Sampler::Exp(e),
                Err(_) => Sampler::Fixed(mean.as_secs_f64()),
            },
            Self::LogNormal { median, p90 } => {
                let mu = median.as_secs_f64().ln();
                let sigma = (p90.as_secs_f64().ln() - mu) / Z90;
                match LogNormal::new(mu, sigma) {
                    Ok(l) => Sampler::LogNormal(l),
                    Err(_) => Sampler::Fixed(median.as_secs_f64()),
                }
            }
        }
    }
}

impl fmt::Display for DurationDist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = |d: &Duration| super::summary::human(d.as_secs_f64());
        match self {
            Self::Fixed(d) => write!(f, "{}", h(d)),
            Self::Exponential(d) => write!(f, "exp:{}", h(d)),
            Self::LogNormal { median, p90 } => write!(f, "lognormal:{},{}", h(median), h(p90)),
        }
    }
}

/// Draws durations (in whole milliseconds) from a [`DurationDist`].
#[derive(Debug, Clone, Copy)]
pub enum Sampler {
    /// Seconds.
    Fixed(f64),
    /// Seconds.
    Exp(Exp<f64>),
    /// Seconds.
    LogNormal(LogNormal<f64>),
}

impl Sampler {
    /// One draw, in milliseconds (at most 10⁹ s).
    pub fn sample_ms(&self, rng: &mut impl Rng) -> u64 {
        let secs = match self {
            Self::Fixed(s) => *s,
            Self::Exp(e) => e.sample(rng),
            Self::LogNormal(l) => l.sample(rng),
        };
        (secs.clamp(0.0, 1e9) * 1000.0).round() as u64
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("5 weeks").is_err());
        assert!(parse_duration("-3s").is_err());
    }

    #[test]
    fn lognormal_hits_its_median_and_p90() {
        let d = DurationDist::parse("lognormal:20m,45m").expect("valid");
        let s = d.sampler();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut v: Vec<u64> = (0..20_000).map(|_| s.sample_ms(&mut rng)).collect();
        v.sort_unstable();
        let (median, p90) = (v[10_000] as f64 / 60e3, v[18_000] as f64 / 60e3);
        assert!((median - 20.0).abs() < 1.0, "median {median}");
        assert!((p90 - 45.0).abs() < 2.5, "p90 {p90}");
    }

    #[test]
    fn bad_distributions_say_why() {
        for (s, word) in [
            ("lognormal:45m", "MEDIAN,P90"),
            ("lognormal:45m,20m", "median < p90"),
            ("gauss:3s", "unknown distribution"),
            ("exp:0s", "above 0"),
        ] {
            let e = DurationDist::parse(s).expect_err(s).to_string();
            assert!(e.contains(word), "{s}: {e}");
        }
    }
}
